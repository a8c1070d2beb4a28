package kernel

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"
)

// errAbandoned is what an await returns when the loop was closed while the
// task was suspended: the coroutine must return, since it will never be
// resumed.
var errAbandoned = fmt.Errorf("task abandoned: %w", ErrClosed)

// Co is a running coroutine's handle on its task: what a coroutine body uses
// to await futures and tasks, yield to the loop and sleep. A body gets its
// *Co as its argument and must use it only on its own goroutine of control.
//
// A task's Co is the first field of its taskState, so the Co leads to the
// task without a pointer of its own (see task): every byte of a task counts
// in a fan-out of short tasks, where the tasks' bytes set how often the
// collector runs.
type Co struct {
	loop *Loop
	// suspend parks an async generator's body until w is done (w == nil:
	// until the loop has run one batch of callbacks) and returns a
	// cancellation delivered meanwhile; nil for a task's coroutine, which
	// suspends through its taskState.
	suspend func(w *futureCore) error
}

// task returns the task whose coroutine this is, or nil for an async
// generator's body (and for a zero Co, which no coroutine gets).
func (co *Co) task() *taskState {
	if co.suspend != nil || co.loop == nil {
		return nil
	}
	// A task's Co is the first field of its taskState (createTask).
	return (*taskState)(unsafe.Pointer(co))
}

// Loop returns the loop the coroutine runs on.
func (co *Co) Loop() *Loop { return co.loop }

// Context returns the context the task was created with (CreateTaskContext),
// or context.Background() for a task created without one: what a coroutine
// passes on to Go code that takes a context.
func (co *Co) Context() context.Context {
	if t := co.task(); t != nil && t.rare != nil && t.rare.ctx != nil {
		return t.rare.ctx
	}
	return context.Background()
}

func (co *Co) await(w *futureCore) error {
	if w.loop != co.loop {
		return fmt.Errorf("await: %w", ErrDifferentLoop)
	}
	if w.done() {
		return nil
	}
	if w.task != nil && w.task == co.loop.currentTask {
		// It would wait for itself forever (asyncio raises RuntimeError).
		return fmt.Errorf("await: a task cannot await itself: %w", ErrInvalidState)
	}
	if t := co.task(); t != nil {
		return t.suspend(w)
	}
	return co.suspend(w)
}

// Yield gives the loop one turn before the coroutine continues (asyncio:
// await asyncio.sleep(0)). It returns a *CancelledError if the task was
// cancelled meanwhile.
func (co *Co) Yield() error {
	if t := co.task(); t != nil {
		return t.suspend(nil)
	}
	return co.suspend(nil)
}

// Sleep suspends the coroutine for d (asyncio.sleep).
func (co *Co) Sleep(d time.Duration) error {
	if d <= 0 {
		return co.Yield()
	}
	f := CreateFuture[struct{}](co.loop)
	th, err := co.loop.CallLater(d, func() { f.SetResult(struct{}{}) })
	if err != nil {
		return err
	}
	if _, err := f.Await(co); err != nil {
		th.Cancel()
		return err
	}
	return nil
}

// taskState drives one coroutine on a runner (an iter.Pull coroutine, see
// runner): resuming the coroutine is a direct switch (~75 ns) rather than a
// channel hand-off between goroutines.
//
// A task is the one allocation CreateTask makes, and its bytes set how
// often the collector runs in a program that fans out many short tasks, so
// what only some tasks use lives behind rare: a Task[int] fits the
// 176-byte size class.
type taskState struct {
	co     Co // the coroutine's handle; first, so that it leads back here (Co.task)
	fut    *futureCore
	id     uint64  // names the task "Task-<id>" until SetName
	self   taskJob // the *Task[T]: runs the coroutine to its end and completes the task
	r      *runner // the runner, from the first step to the last
	waiter *futureCore
	stepFn func() // the step as a done callback, made at the first suspending await (see runHandle)
	// watch is a gather waiting for this task, notified without a closure
	// before any other done callback (see futureCore.watch).
	watch *gatherState
	rare  *taskRare // nil until a task needs one of its fields
	slot  int32     // index in Loop.tasks while pending, -1 after
	// cancels counts cancellation requests not yet withdrawn with Uncancel
	// (asyncio's Task.cancelling()); timeouts and task groups compare it to
	// tell their own cancellation from one that came from outside.
	cancels    int32
	mustCancel bool
	started    bool
}

// taskRare is the part of a task that only some tasks use: a name, a
// context, a cancellation message, WaitFor's expiry callback, an unread
// error's report.
type taskRare struct {
	name      string
	cancelMsg string
	ctx       context.Context // the task's context (CreateTaskContext)
	ctxStop   func() bool     // stops the context watch of CreateTaskContext
	report    *unretrieved
	// waitForFire is WaitFor's expiry callback, made once per task that
	// uses WaitFor; waitForExpired records that it fired.
	waitForFire    func()
	waitForExpired bool
}

// more returns the task's rare part, making it on first use.
func (t *taskState) more() *taskRare {
	if t.rare == nil {
		t.rare = new(taskRare)
	}
	return t.rare
}

// cancelMsg is the message of the cancellation last requested.
func (t *taskState) cancelMsg() string {
	if t.rare == nil {
		return ""
	}
	return t.rare.cancelMsg
}

// unread reports whether the task failed and nobody has read its error.
func (t *taskState) unread() bool { return t.rare != nil && t.rare.report != nil }

var taskCounter atomic.Uint64

// Task runs a coroutine on the loop (asyncio.Task). It reads like a Future
// for the coroutine's result: await it, add done callbacks, or cancel it,
// which delivers a *CancelledError into the coroutine at the await where it
// is suspended. Unlike a Future it has no SetResult or SetException: only its
// coroutine completes it (asyncio's Task raises RuntimeError on
// set_result/set_exception; here the call does not compile).
type Task[T any] struct {
	outcome[T]
	t    taskState
	coro func(co *Co) (T, error)
}

// taskJob is what a runner runs: a task's coroutine, start to end. An
// interface over *Task[T] rather than a closure, so creating a task does not
// allocate one; being an Awaitable too, it names the task in error contexts.
type taskJob interface {
	Awaitable
	runCoroutine()
}

func (task *Task[T]) runCoroutine() {
	coro := task.coro
	task.coro = nil // the task may outlive what its coroutine referenced
	v, err := runCoro(&task.t, &task.t.co, coro)
	task.complete(v, err)
}

// TaskFactory decides how a new task is started (asyncio:
// loop.set_task_factory). It receives the task and its start function and
// must arrange for start to be called exactly once: the default schedules it
// with CallSoon; EagerTaskFactory calls it at once. A factory can also wrap
// the task's start, for instance to trace or count tasks.
type TaskFactory func(l *Loop, task Awaitable, start func())

// EagerTaskFactory starts each task at once, running its coroutine
// synchronously until it first suspends (asyncio.eager_task_factory).
func EagerTaskFactory(_ *Loop, _ Awaitable, start func()) { start() }

// SetTaskFactory sets the factory CreateTask uses; nil restores the default.
func (l *Loop) SetTaskFactory(f TaskFactory) { l.taskFactory = f }

// GetTaskFactory returns the task factory, or nil for the default.
func (l *Loop) GetTaskFactory() TaskFactory { return l.taskFactory }

// CreateTask wraps coro in a task and schedules it (asyncio:
// loop.create_task). The coroutine's returned error becomes the task's
// exception; a returned error that matches ErrCancelled, or a cancellation
// requested before it returned, makes the task cancelled; a panic becomes a
// *PanicError.
func CreateTask[T any](l *Loop, coro func(co *Co) (T, error)) (*Task[T], error) {
	return createTask(l, nil, coro)
}

// CreateTaskContext is CreateTask for a task that belongs to ctx: when ctx is
// done the task is cancelled (on the loop goroutine, whichever goroutine ended
// the context), with the context's cause as the cancellation message, and
// co.Context() hands ctx to the coroutine. A context that is already done
// cancels the task before its coroutine starts. The watch on ctx ends when
// the task does.
func CreateTaskContext[T any](l *Loop, ctx context.Context, coro func(co *Co) (T, error)) (*Task[T], error) {
	if ctx == nil {
		return nil, fmt.Errorf("create task: nil context: %w", ErrInvalidState)
	}
	task, err := createTask(l, ctx, coro)
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		task.t.cancel(context.Cause(ctx).Error())
		return task, nil
	}
	if ctx.Done() != nil {
		task.t.more().ctxStop = context.AfterFunc(ctx, func() {
			// Cancel on the loop goroutine; if the loop is closed the task
			// was abandoned with it and there is nothing to cancel.
			l.CallSoonThreadsafe(func() { task.t.cancel(context.Cause(ctx).Error()) })
		})
	}
	return task, nil
}

func createTask[T any](l *Loop, ctx context.Context, coro func(co *Co) (T, error)) (*Task[T], error) {
	if err := l.checkUsable(); err != nil {
		return nil, fmt.Errorf("create task: %w", err)
	}
	task := &Task[T]{outcome: outcome[T]{futureCore: futureCore{loop: l}}}
	t := &task.t
	t.fut = &task.futureCore
	t.self = task
	task.futureCore.task = t
	t.id = taskCounter.Add(1)
	t.co = Co{loop: l}
	if ctx != nil {
		t.more().ctx = ctx
	}
	task.coro = coro
	l.addTask(t)
	if l.taskFactory != nil {
		l.taskFactory(l, task, t.start)
	} else {
		// The step itself as a handleRunner, not the method value t.start,
		// which would cost an allocation per task; the default factory
		// starts exactly once.
		l.callSoonRun(t, nil)
	}
	return task, nil
}

// addTask enters t in the loop's set of pending tasks. The set is a slice
// in which each task knows its index, rather than a map: an append and a
// swap with the last entry per task instead of a hashed insert and delete.
// The set has no order (nor had the map): Close and CancelAllTasks walk it
// whole.
func (l *Loop) addTask(t *taskState) {
	t.slot = int32(len(l.tasks))
	l.tasks = append(l.tasks, t)
}

// removeTask takes t out of the pending set, moving the last task into its
// slot.
func (l *Loop) removeTask(t *taskState) {
	i := int(t.slot)
	if i < 0 || i >= len(l.tasks) || l.tasks[i] != t {
		return // not pending (the loop was closed and its set cleared)
	}
	last := len(l.tasks) - 1
	if i != last {
		m := l.tasks[last]
		l.tasks[i], m.slot = m, int32(i)
	}
	l.tasks[last] = nil
	l.tasks = l.tasks[:last]
	t.slot = -1
}

// suspend is a task's side of Co.await and Co.Yield: it parks the
// coroutine on its runner until the step resumes it.
func (t *taskState) suspend(w *futureCore) error {
	if t.mustCancel {
		t.mustCancel = false
		return &CancelledError{Msg: t.cancelMsg()}
	}
	r := t.r
	if w == nil && r.top && t.fut.loop.skipTurn() {
		return nil // the loop's next turn would only resume this task
	}
	t.waiter = w
	if !r.yield(struct{}{}) {
		return errAbandoned
	}
	t.waiter = nil
	if t.mustCancel {
		t.mustCancel = false
		return &CancelledError{Msg: t.cancelMsg()}
	}
	return nil
}

// runCoro runs the body, turning a cancellation requested before the first
// step and a panic into the task's outcome.
func runCoro[T any](t *taskState, co *Co, coro func(co *Co) (T, error)) (v T, err error) {
	if t.mustCancel {
		t.mustCancel = false
		return v, &CancelledError{Msg: t.cancelMsg()}
	}
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError(r)
		}
	}()
	return coro(co)
}

func (task *Task[T]) complete(v T, err error) {
	t := &task.t
	task.loop.removeTask(t)
	if t.rare != nil && t.rare.ctxStop != nil {
		t.rare.ctxStop()
		t.rare.ctxStop = nil
	}
	switch {
	case err != nil && errors.Is(err, ErrCancelled):
		t.fut.state, t.fut.err = cancelled, err
		t.fut.scheduleCallbacks()
	case err != nil:
		// An error wins over a cancellation not yet delivered, as in
		// asyncio, where only a coroutine that returns normally is
		// cancelled "right before it stopped".
		task.finish(err)
		if !task.loop.closed.Load() { // not a coroutine abandoned by Close
			trackUnretrieved(task)
		}
	case t.mustCancel:
		// Cancelled right before the coroutine returned.
		t.fut.cancelNow(t.cancelMsg())
	default:
		task.value = v
		task.finish(nil)
	}
}

// Name returns the task's name ("Task-N" unless set).
func (task *Task[T]) Name() string { return task.t.nameOf() }

// nameOf formats the default name on demand: most tasks are never asked
// for theirs, and formatting it in CreateTask cost an allocation each.
func (t *taskState) nameOf() string {
	if t.rare == nil || t.rare.name == "" {
		return "Task-" + strconv.FormatUint(t.id, 10)
	}
	return t.rare.name
}

// SetName renames the task.
func (task *Task[T]) SetName(name string) { task.t.more().name = name }

// AddDoneCallback schedules fn(task) with CallSoon once the task is done.
func (task *Task[T]) AddDoneCallback(fn func(*Task[T])) {
	task.addDone(func() { fn(task) })
}

// Cancelling reports how many cancellation requests the task has had that
// Uncancel has not withdrawn (asyncio: Task.cancelling). Structured
// concurrency uses it: a timeout or task group that cancelled its task
// withdraws its own request and can then see whether anyone else asked.
func (task *Task[T]) Cancelling() int { return int(task.t.cancels) }

// Uncancel withdraws one cancellation request and returns how many remain
// (asyncio: Task.uncancel). When none remain, a cancellation not yet
// delivered to the coroutine is dropped too, as in Python 3.13.
func (task *Task[T]) Uncancel() int { return task.t.uncancel() }

func (t *taskState) uncancel() int {
	if t.cancels > 0 {
		t.cancels--
		if t.cancels == 0 {
			t.mustCancel = false
		}
	}
	return int(t.cancels)
}

func (task *Task[T]) String() string {
	return fmt.Sprintf("<Task %s name=%s>", task.stateString(), task.t.nameOf())
}

func (t *taskState) start() {
	if t.started {
		return
	}
	t.started = true
	t.runHandle(nil)
}

// runHandle is the task's step: it resumes the coroutine until it suspends
// or returns and then arranges for the next step: when its waiter is done,
// or on the next iteration for a bare yield. The loop calls it through the
// handle's interface value (handleRunner), a direct call into this method
// with no wrapper frame between the loop and the coroutine switch, which
// would cost a mispredicted return on every switch (see Loop.iterate).
func (t *taskState) runHandle(*futureCore) {
	l := t.fut.loop
	direct := l.direct // iterate runs this step as its own callback
	// Either way iterate runs the step as the batch's callback, not nested
	// in another callback (an eager start): see skipTurn.
	top := direct || l.viaStepFn
	l.direct, l.viaStepFn = false, false
	if t.fut.done() {
		return
	}
	r := t.r
	if r == nil {
		r = l.getRunner()
		r.t, t.r = t, r
	}
	r.direct, r.top = direct, top
	prev := l.currentTask
	l.currentTask = t
	_, more := r.next()
	l.currentTask = prev
	if !more {
		return
	}
	// The runner may have gone on to the first steps of the tasks after
	// t in the batch (chainStep): what follows is for the last it ran.
	t = r.t
	if r.idle { // the coroutine returned: the runner is free again
		t.r, r.t = nil, nil
		l.putRunner(r)
		return
	}
	w := t.waiter
	if w == nil {
		l.callSoonRun(t, nil)
		return
	}
	if t.stepFn == nil {
		// Made at the first await that suspends, not in CreateTask: most
		// tasks of a fan-out never wait on a future.
		// Only iterate runs it (done callbacks are always scheduled).
		t.stepFn = func() {
			l.viaStepFn = true
			t.runHandle(nil)
		}
	}
	w.addDone(t.stepFn)
	if t.mustCancel && w.cancel(t.cancelMsg()) {
		t.mustCancel = false
	}
}

func (t *taskState) describe() string { return "Task.step " + t.nameOf() }

// cancel requests cancellation: the waiter is cancelled if there is one
// (which wakes the task with the cancellation), otherwise the next
// resumption delivers it.
func (t *taskState) cancel(msg string) bool {
	if t.fut.done() {
		return false
	}
	t.cancels++
	if t.waiter != nil && t.waiter.cancel(msg) {
		return true
	}
	t.mustCancel = true
	if msg != "" || t.rare != nil {
		t.more().cancelMsg = msg
	}
	return true
}

// abandonTasks ends the coroutines of tasks still pending when the loop
// closes, so their suspended stacks are released, and then those of async
// generators still open (a task suspended in a generator's Next finishes
// that generator as it ends).
func (l *Loop) abandonTasks() {
	// Stopping a runner can end its task, which takes itself out of
	// l.tasks; detach the set first so that does not reorder it under us.
	pending := l.tasks
	l.tasks = nil
	for _, t := range pending {
		t.slot = -1
		if t.rare != nil && t.rare.ctxStop != nil {
			t.rare.ctxStop()
		}
		if t.r != nil {
			t.r.stop()
		}
	}
	for _, r := range l.taskAux.runners {
		r.stop()
	}
	clear(l.taskAux.runners)
	l.taskAux.runners = nil
	clear(pending)
	for g := range l.asyncgens {
		g.abandon()
	}
	clear(l.asyncgens)
	l.reportUnretrieved()
}

// runner is a coroutine (an iter.Pull goroutine) that runs task bodies one
// after another. Creating a goroutine and its coroutine was more than half
// of what CreateTask cost; a task takes a runner at its first step and gives
// it back when its body returns, so a loop that runs many short tasks
// reuses a few goroutines. An idle runner is parked in the loop's pool
// (at most maxIdleRunners) and stopped at Close.
type runner struct {
	loop  *Loop
	next  func() (struct{}, bool)
	stop  func()
	yield func(struct{}) bool
	t     *taskState // the task whose coroutine the runner runs (or the next resume starts)
	idle  bool       // the task's coroutine returned; set until the runner is reused
	// direct: the step that resumed the runner is iterate's own callback,
	// so the runner may go on to the batch's next task (chainStep).
	direct bool
	// top: the step that resumed the runner is a callback iterate runs
	// itself, directly or as a done callback, not one nested in another
	// callback, so its yield may skip the loop's turn (skipTurn).
	top bool
	gid uint64 // debug mode: this goroutine acts for loop
}

const maxIdleRunners = 128

// taskAux is the loop's task bookkeeping beyond the pending set: idle
// runners and failed tasks whose error nobody read.
type taskAux struct {
	runners     []*runner
	waiters     []*futureCore // idle waiters of Lock, Queue and the like (sync_waitq.go)
	unretrieved map[*unretrieved]struct{}
}

func (l *Loop) getRunner() *runner {
	if n := len(l.taskAux.runners); n > 0 {
		r := l.taskAux.runners[n-1]
		l.taskAux.runners[n-1] = nil
		l.taskAux.runners = l.taskAux.runners[:n-1]
		r.idle = false
		return r
	}
	r := &runner{loop: l}
	r.next, r.stop = iter.Pull(func(yield func(struct{}) bool) {
		r.yield = yield
		// This goroutine acts for l for as long as the runner lives, so
		// RunningLoop answers l inside every task it runs (goroutine.go).
		r.gid = l.registerCoroutine()
		defer func() { unregisterCoroutine(r.gid) }()
		for {
			r.t.self.runCoroutine()
			if l.chainStep(r) {
				continue
			}
			r.idle = true
			if !yield(struct{}{}) {
				return
			}
		}
	})
	return r
}

// chainStep runs the loop's next callback on the runner r, whose task has
// just returned, when that callback is the first step of another task: it
// would take an idle runner (this one) and resume it, so running it here
// saves two coroutine switches, which were most of what a short task cost.
// It does what Loop.iterate and the step would have done, in the same
// order: it takes the next callback of the same batch and gives r the new
// task, which becomes the current task. The handle is released at once
// rather than after the step, as nothing holds it (callSoonRun gives out no
// Handle); iterate releases the handle of the step it called when r
// finally switches back. chainStep reports whether it did; it does not when
// the step that resumed r was not iterate's own callback (an eager start,
// a waiter's callback), in debug mode (each callback is timed on its own),
// or when the next callback is anything else.
func (l *Loop) chainStep(r *runner) bool {
	if !r.direct || l.debug || l.batch <= 0 {
		return false
	}
	h := l.ready.buf[l.ready.head]
	t, ok := h.run.(*taskState)
	if !ok || h.fn != nil || h.cancelled || h.ctx != nil || t.r != nil || t.fut.done() {
		return false
	}
	l.ready.pop()
	l.batch--
	l.release(h)
	r.t.r = nil // the returned task's step ends: its runner is free
	r.t, t.r = t, r
	l.currentTask = t
	return true
}

func (l *Loop) putRunner(r *runner) {
	if len(l.taskAux.runners) >= maxIdleRunners || l.closed.Load() {
		r.stop()
		return
	}
	l.taskAux.runners = append(l.taskAux.runners, r)
}
