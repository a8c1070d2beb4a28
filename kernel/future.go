package kernel

import (
	"fmt"
)

// Awaitable is a Future or a Task: something a coroutine can await and
// RunUntilComplete can run. Only the kernel's own types implement it.
type Awaitable interface {
	// Done reports whether the result, an error or a cancellation is set.
	Done() bool
	// Cancelled reports whether it was cancelled.
	Cancelled() bool
	// Cancel requests cancellation; it reports false if already done.
	Cancel() bool
	// Err is the outcome without the value: nil on success, the error, a
	// *CancelledError, or ErrInvalidState while pending.
	Err() error
	core() *futureCore
}

type futureState uint8

const (
	pending futureState = iota
	finished
	cancelled
)

// futureCore is the untyped part of every Future: state, error, done
// callbacks. The first done callback is kept inline because almost every
// future has exactly one (the task awaiting it), which saves an allocation;
// the rest live behind a pointer, so that the common future stays in the
// 64-byte size class (a slice header here made it 80): futures are the one
// allocation most awaits make, and their bytes set how often the collector
// runs.
type futureCore struct {
	loop  *Loop
	err   error
	cb0   func()
	more  *[]func()  // done callbacks after the first, if any
	task  *taskState // non-nil when this future is a Task's
	state futureState
}

func (f *futureCore) core() *futureCore { return f }

// Done reports whether the future is done.
func (f *futureCore) Done() bool { return f.state != pending }

func (f *futureCore) done() bool { return f.state != pending }

// Cancelled reports whether the future was cancelled.
func (f *futureCore) Cancelled() bool { return f.state == cancelled }

// Loop returns the loop the future belongs to.
func (f *futureCore) Loop() *Loop { return f.loop }

// Err returns nil on success, the error set with SetException, a
// *CancelledError if cancelled, or ErrInvalidState while pending.
func (f *futureCore) Err() error { return f.errOf() }

func (f *futureCore) errOf() error {
	if f.state == pending {
		return fmt.Errorf("future is pending: %w", ErrInvalidState)
	}
	if f.task != nil && f.task.unread() {
		f.task.retrieved()
	}
	return f.err
}

// Cancel cancels the future (or, for a task, requests that its coroutine be
// cancelled) and schedules its done callbacks. It reports false if the
// future is already done.
func (f *futureCore) Cancel() bool { return f.cancel("") }

// CancelMsg is Cancel with a message carried by the *CancelledError.
func (f *futureCore) CancelMsg(msg string) bool { return f.cancel(msg) }

func (f *futureCore) cancel(msg string) bool {
	if f.task != nil {
		return f.task.cancel(msg)
	}
	return f.cancelNow(msg)
}

func (f *futureCore) cancelNow(msg string) bool {
	if f.state != pending {
		return false
	}
	f.state, f.err = cancelled, &CancelledError{Msg: msg}
	f.scheduleCallbacks()
	return true
}

func (f *futureCore) finish(err error) {
	f.state, f.err = finished, err
	f.scheduleCallbacks()
}

// addDone registers fn to be scheduled with CallSoon when the future is
// done (at once if it is done already). The id lets removeDone withdraw it.
func (f *futureCore) addDone(fn func()) int {
	if f.state != pending {
		f.loop.CallSoon(fn)
		return 0
	}
	if f.cb0 == nil && f.more == nil {
		f.cb0 = fn
		return 1
	}
	if f.more == nil {
		f.more = new([]func())
	}
	*f.more = append(*f.more, fn)
	return len(*f.more) + 1
}

func (f *futureCore) removeDone(id int) {
	switch {
	case id == 1:
		f.cb0 = nil
	case id > 1 && f.more != nil && id-2 < len(*f.more):
		(*f.more)[id-2] = nil
	}
}

// watch registers the gather w to run as w.runHandle(f), through the ready
// queue like any done callback, when the task f is done; it allocates
// nothing. It
// reports false, registering nothing, unless f is a pending task with no
// done callback yet (the caller then uses addDone): the watch is scheduled
// before the other callbacks, so it must have been the first.
func (f *futureCore) watch(w *gatherState) bool {
	t := f.task
	if t == nil || f.state != pending || f.cb0 != nil || f.more != nil || t.watch != nil {
		return false
	}
	t.watch = w
	return true
}

func (f *futureCore) scheduleCallbacks() {
	if t := f.task; t != nil && t.watch != nil {
		w := t.watch
		t.watch = nil
		f.loop.callSoonRun(w, f)
	}
	if cb := f.cb0; cb != nil {
		f.cb0 = nil
		f.loop.CallSoon(cb)
	}
	if f.more == nil {
		return
	}
	cbs := *f.more
	for i, cb := range cbs {
		if cb != nil {
			f.loop.CallSoon(cb)
		}
		cbs[i] = nil
	}
	*f.more = cbs[:0]
}

func (f *futureCore) stateString() string {
	switch f.state {
	case pending:
		return "pending"
	case cancelled:
		return "cancelled"
	}
	if f.err != nil {
		return fmt.Sprintf("finished error=%q", f.err.Error())
	}
	return "finished"
}

// outcome is the typed part that futures and tasks share: the value beside
// the untyped core, and the read side (Result, Await). It has no setters: a
// Future adds SetResult and SetException, while a Task is completed only by
// its coroutine, so that a task cannot be finished behind its coroutine's
// back (asyncio's Task.set_result raises RuntimeError for the same reason).
type outcome[T any] struct {
	futureCore
	value T
}

// Result returns the value and error. A pending future or task returns
// ErrInvalidState; a cancelled one a *CancelledError.
func (o *outcome[T]) Result() (T, error) {
	if o.state != finished || o.err != nil {
		var zero T
		return zero, o.errOf()
	}
	return o.value, nil
}

// Await suspends the calling task until the future or task is done and
// returns its result. One that is already done returns at once without
// yielding. If the calling task is cancelled while it waits, Await returns a
// *CancelledError.
func (o *outcome[T]) Await(co *Co) (T, error) {
	if err := co.await(&o.futureCore); err != nil {
		var zero T
		return zero, err
	}
	return o.Result()
}

// Future is the result of an operation that completes later
// (asyncio.Future). It is not thread-safe: complete it on the loop's
// goroutine (from elsewhere, through CallSoonThreadsafe).
type Future[T any] struct {
	outcome[T]
}

// CreateFuture returns a pending future attached to l (asyncio:
// loop.create_future()). Go methods cannot take type parameters, so this is
// a function of the loop rather than a method.
func CreateFuture[T any](l *Loop) *Future[T] {
	return &Future[T]{outcome[T]{futureCore: futureCore{loop: l}}}
}

// SetResult marks the future done with v and schedules its callbacks. It
// fails with ErrInvalidState if the future is already done.
func (f *Future[T]) SetResult(v T) error {
	if f.loop.debug {
		if err := f.loop.checkGoroutine(); err != nil {
			return fmt.Errorf("set result: %w", err)
		}
	}
	if f.state != pending {
		return fmt.Errorf("set result on a %s future: %w", f.stateString(), ErrInvalidState)
	}
	f.value = v
	f.finish(nil)
	return nil
}

// SetException marks the future done with err. Use Cancel, not a
// *CancelledError, to cancel.
func (f *Future[T]) SetException(err error) error {
	if err == nil {
		return fmt.Errorf("set exception: nil error: %w", ErrInvalidState)
	}
	if f.loop.debug {
		if err := f.loop.checkGoroutine(); err != nil {
			return fmt.Errorf("set exception: %w", err)
		}
	}
	if f.state != pending {
		return fmt.Errorf("set exception on a %s future: %w", f.stateString(), ErrInvalidState)
	}
	f.finish(err)
	return nil
}

// AddDoneCallback schedules fn(f) with CallSoon once the future is done.
func (f *Future[T]) AddDoneCallback(fn func(*Future[T])) {
	f.addDone(func() { fn(f) })
}

func (f *Future[T]) String() string {
	if f.state == finished && f.err == nil {
		return fmt.Sprintf("<Future finished result=%v>", f.value)
	}
	return "<Future " + f.stateString() + ">"
}
