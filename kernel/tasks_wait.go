package kernel

import (
	"fmt"
	"iter"
	"time"
)

// ReturnWhen says when Wait returns (asyncio's return_when).
type ReturnWhen uint8

const (
	// AllCompleted: when every awaitable is done (ALL_COMPLETED).
	AllCompleted ReturnWhen = iota
	// FirstCompleted: when any is done (FIRST_COMPLETED).
	FirstCompleted
	// FirstException: when any ends with an error, or all are done
	// (FIRST_EXCEPTION); a cancellation is not an error here.
	FirstException
)

// waitState is what Wait's and AsCompleted's callbacks share.
type waitState struct {
	loop     *Loop
	pending  int
	when     ReturnWhen
	wait     *futureCore
	timedOut bool
	ready    []int // AsCompleted: indexes in completion order
}

func (w *waitState) release() {
	if w.wait != nil && !w.wait.done() {
		w.wait.finish(nil)
	}
}

func (w *waitState) onTimeout() {
	w.timedOut = true
	w.release()
}

func (w *waitState) done(c *futureCore) {
	w.pending--
	if w.pending == 0 || w.when == FirstCompleted ||
		(w.when == FirstException && c.state == finished && c.err != nil) {
		w.release()
	}
}

// Wait waits for the awaitables until the return_when condition holds or
// timeout passes (asyncio.wait) and splits them into done and pending, each
// in argument order. It never cancels them and never returns their errors:
// a timeout just returns with some still pending. err is the caller's
// *CancelledError, ErrDifferentLoop, or ErrInvalidState for no awaitables.
// NoTimeout waits without limit.
func Wait[A Awaitable](co *Co, aws []A, when ReturnWhen, timeout time.Duration) (done, pending []A, err error) {
	if len(aws) == 0 {
		return nil, nil, fmt.Errorf("wait: no awaitables: %w", ErrInvalidState)
	}
	w := &waitState{loop: co.loop, when: when}
	met := false
	for i, a := range aws {
		c := a.core()
		if c.loop != co.loop {
			return nil, nil, fmt.Errorf("wait: awaitable %d: %w", i, ErrDifferentLoop)
		}
		if !c.done() {
			w.pending++
		} else if when == FirstCompleted || (when == FirstException && c.state == finished && c.err != nil) {
			met = true
		}
	}
	if w.pending > 0 && !met && timeout != 0 {
		w.wait = &futureCore{loop: co.loop}
		ids := make([]int, len(aws))
		for i, a := range aws {
			if c := a.core(); !c.done() {
				ids[i] = c.addDone(func() { w.done(c) })
			}
		}
		var th TimerHandle
		armed := false
		if timeout != NoTimeout {
			if th, err = co.loop.CallLater(timeout, w.onTimeout); err != nil {
				return nil, nil, fmt.Errorf("wait: %w", err)
			}
			armed = true
		}
		err = awaitCore(co, w.wait)
		if armed {
			th.Cancel()
		}
		for i, a := range aws {
			if ids[i] != 0 {
				a.core().removeDone(ids[i])
			}
		}
		if err != nil {
			return nil, nil, err
		}
	}
	for _, a := range aws {
		if a.Done() {
			done = append(done, a)
		} else {
			pending = append(pending, a)
		}
	}
	return done, pending, nil
}

// AsCompleted yields the awaitables in the order they complete
// (asyncio.as_completed, iterated as in Python 3.13, which yields the
// originals): each step of the range loop waits for the next one to be
// done. The second value is nil for an awaitable; if timeout passes first,
// or the caller is cancelled, the last step yields the zero A with
// ErrTimeout or the *CancelledError instead and the loop ends. Breaking
// out early is fine: the remaining awaitables are left alone.
func AsCompleted[A Awaitable](co *Co, aws []A, timeout time.Duration) iter.Seq2[A, error] {
	return func(yield func(A, error) bool) {
		var zero A
		w := &waitState{loop: co.loop}
		ids := make([]int, len(aws))
		for i, a := range aws {
			c := a.core()
			if c.loop != co.loop {
				yield(zero, fmt.Errorf("as completed: awaitable %d: %w", i, ErrDifferentLoop))
				return
			}
			if c.done() {
				w.ready = append(w.ready, i)
				continue
			}
			w.pending++
			ids[i] = c.addDone(func() {
				ids[i] = 0
				w.ready = append(w.ready, i)
				w.release()
			})
		}
		var th TimerHandle
		armed := false
		defer func() {
			if armed {
				th.Cancel()
			}
			for i, a := range aws {
				if ids[i] != 0 {
					a.core().removeDone(ids[i])
				}
			}
		}()
		if timeout != NoTimeout && w.pending > 0 {
			var err error
			if th, err = co.loop.CallLater(max(timeout, 0), w.onTimeout); err != nil {
				yield(zero, fmt.Errorf("as completed: %w", err))
				return
			}
			armed = true
		}
		for n := 0; n < len(aws); n++ {
			for len(w.ready) == 0 {
				if w.timedOut {
					yield(zero, fmt.Errorf("as completed: %w", ErrTimeout))
					return
				}
				w.wait = &futureCore{loop: co.loop}
				if err := awaitCore(co, w.wait); err != nil {
					yield(zero, err)
					return
				}
			}
			i := w.ready[0]
			w.ready = w.ready[1:]
			if !yield(aws[i], nil) {
				return
			}
		}
	}
}

// Shield returns a future that follows aw's outcome but whose cancellation
// does not cancel aw (asyncio.shield): a coroutine that awaits the shield
// and is cancelled gets its *CancelledError while aw runs on. If the shield
// is cancelled before aw ends, aw's error is no longer read on its behalf,
// so an unread failure of aw is still reported.
func Shield[T any](aw AwaitableOf[T]) *Future[T] {
	c := aw.core()
	outer := CreateFuture[T](c.loop)
	copyOutcome := func() {
		if outer.state != pending {
			if c.state != cancelled {
				c.errOf() // the caller gave up on it: mark it read
			}
			return
		}
		switch v, err := aw.Result(); {
		case c.state == cancelled:
			outer.cancelNow(errMsg(err))
		case err != nil:
			outer.finish(err)
		default:
			outer.value = v
			outer.finish(nil)
		}
	}
	if c.done() {
		copyOutcome()
		return outer
	}
	id := c.addDone(copyOutcome)
	outer.addDone(func() {
		if !c.done() {
			c.removeDone(id)
		}
	})
	return outer
}

func errMsg(err error) string {
	if ce, ok := err.(*CancelledError); ok {
		return ce.Msg
	}
	return ""
}

// SleepResult sleeps for d and returns v (asyncio.sleep(delay, result)).
func SleepResult[T any](co *Co, d time.Duration, v T) (T, error) {
	if err := co.Sleep(d); err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}
