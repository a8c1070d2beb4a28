package kernel

import (
	"fmt"
	"runtime"
	"sync/atomic"
)

// A task that fails and whose error nobody reads is a bug the program never
// hears about. asyncio logs "Task exception was never retrieved" from the
// task's __del__; Go has no destructor, so the kernel combines two signals:
//
//   - runtime.AddCleanup on every task that ends with an error (cancellation
//     is not an error): once the collector finds the task unreachable with
//     its error unread, the report goes to the loop's exception handler on
//     the loop goroutine (through CallSoonThreadsafe; after Close, to the
//     default handler, which only logs);
//   - Loop.Close reports every such task still unread, reachable or not:
//     a program that closes its loop and exits would otherwise never see a
//     report, since the collector may not have run by then.
//
// The trade-off: a report needs a collection cycle (or Close), so it comes
// later than asyncio's reference-counted __del__; and a task still held at
// Close whose error is read only after Close is reported although it was
// read. Reading the error (Err, Result, Await, RunUntilComplete, or a
// toolkit function such as Gather or a TaskGroup) withdraws the report.
// Only tasks are tracked, not plain futures (asyncio's "Future exception was
// never retrieved"): a field in every future would move the common future
// out of its size class, and futures fail by the program's own
// SetException, which is rarely forgotten.
type unretrieved struct {
	loop    *Loop
	err     error
	name    string
	state   atomic.Uint32 // 0 pending, 1 read or reported
	cleanup runtime.Cleanup
}

// droppedTask stands in for a task that the collector has already taken,
// so that the exception handler still gets an Awaitable describing it.
type droppedTask struct {
	futureCore
	name string
}

func (d *droppedTask) String() string {
	return fmt.Sprintf("<Task %s name=%s>", d.stateString(), d.name)
}

// trackUnretrieved arms the report for a task that just failed.
func trackUnretrieved[T any](task *Task[T]) {
	l := task.loop
	r := &unretrieved{loop: l, err: task.err, name: task.t.nameOf()}
	r.cleanup = runtime.AddCleanup(task, (*unretrieved).dropped, r)
	task.t.more().report = r
	if l.taskAux.unretrieved == nil {
		l.taskAux.unretrieved = make(map[*unretrieved]struct{})
	}
	l.taskAux.unretrieved[r] = struct{}{}
}

// retrieved withdraws the report: the task's error has been read.
func (t *taskState) retrieved() {
	r := t.rare.report
	t.rare.report = nil
	r.state.Store(1)
	r.cleanup.Stop()
	delete(r.loop.taskAux.unretrieved, r)
}

// dropped runs on a cleanup goroutine after the collector took the task.
func (r *unretrieved) dropped() {
	if _, err := r.loop.CallSoonThreadsafe(func() {
		delete(r.loop.taskAux.unretrieved, r)
		r.report(r.loop.CallExceptionHandler)
	}); err != nil {
		// The loop is closed: Close reported it, unless this goroutine
		// wins the claim, and then only the (thread-safe) logger is used.
		r.report(r.loop.safeDefault)
	}
}

func (r *unretrieved) report(handler func(ErrorContext)) {
	if !r.state.CompareAndSwap(0, 1) {
		return
	}
	handler(ErrorContext{
		Message: "Task exception was never retrieved",
		Err:     r.err,
		Future:  &droppedTask{futureCore: futureCore{loop: r.loop, err: r.err, state: finished}, name: r.name},
	})
}

// reportUnretrieved is Close's half: every failed task still unread.
func (l *Loop) reportUnretrieved() {
	for r := range l.taskAux.unretrieved {
		r.cleanup.Stop()
		r.report(l.CallExceptionHandler)
	}
	clear(l.taskAux.unretrieved)
}
