package kernel

import (
	"errors"
	"fmt"
	"strings"
)

// TaskGroup is structured concurrency (asyncio.TaskGroup, Python 3.12+):
// the tasks created in a group all end before RunTaskGroup returns. The
// first task to fail cancels the others and the task running the group;
// the errors of every failed task (and of the body) come back together as a
// *TaskGroupError. Cancellations are not errors: a cancelled child is just
// done.
//
// Cancelling the task running the group from outside cancels every child,
// waits for them and returns the *CancelledError, unless children failed
// meanwhile: their errors take priority, as in asyncio. The group tells its
// own cancellation of the parent (after a child failed) from an outside one
// by the parent's count of cancellation requests (Task.Cancelling), so an
// outside cancellation that arrives at the same time is not swallowed.
type TaskGroup struct {
	loop        *Loop
	parent      *taskState
	children    []*futureCore
	pending     int
	errs        []error
	exiting     bool
	aborting    bool
	parentAsked bool // the group cancelled the parent
	onCompleted *futureCore
}

// TaskGroupError carries the errors of a task group's failed tasks and body
// (asyncio's ExceptionGroup "unhandled errors in a TaskGroup"). Its Unwrap
// returns all of them, as errors.Join's does, so errors.Is and errors.As see
// each one.
type TaskGroupError struct {
	Errs []error
}

func (e *TaskGroupError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "unhandled errors in a TaskGroup (%d sub-error", len(e.Errs))
	if len(e.Errs) != 1 {
		b.WriteByte('s')
	}
	b.WriteString(")")
	for _, err := range e.Errs {
		b.WriteString("; ")
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns the errors, for errors.Is and errors.As.
func (e *TaskGroupError) Unwrap() []error { return e.Errs }

// RunTaskGroup runs body with a new task group and returns once every task
// created in it has ended (async with asyncio.TaskGroup() as tg). It must
// be called from a task. A body that returns an error (or panics) cancels
// the group's tasks; that error joins theirs. The result is nil, the
// parent's *CancelledError, or a *TaskGroupError.
func RunTaskGroup(co *Co, body func(tg *TaskGroup) error) error {
	t := co.task()
	if t == nil { // an async generator's body: the task consuming it
		t = co.loop.currentTask
	}
	if t == nil || t.fut.done() {
		return fmt.Errorf("task group: must be used inside a task: %w", ErrInvalidState)
	}
	tg := &TaskGroup{loop: co.loop, parent: t}
	return tg.exit(co, runBody(tg, body))
}

func runBody(tg *TaskGroup, body func(tg *TaskGroup) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError(r)
		}
	}()
	return body(tg)
}

// CreateGroupTask creates a task in tg (tg.create_task). It fails with
// ErrInvalidState once the group is shutting down (a task failed, or the
// parent was cancelled) or has finished.
func CreateGroupTask[T any](tg *TaskGroup, coro func(co *Co) (T, error)) (*Task[T], error) {
	if err := tg.check(); err != nil {
		return nil, err
	}
	task, err := CreateTask(tg.loop, coro)
	if err != nil {
		return nil, fmt.Errorf("task group: %w", err)
	}
	tg.add(&task.futureCore)
	return task, nil
}

// Go starts coro as a task of the group, for coroutines whose only result
// is their error.
func (tg *TaskGroup) Go(coro func(co *Co) error) error {
	_, err := CreateGroupTask(tg, func(co *Co) (struct{}, error) { return struct{}{}, coro(co) })
	return err
}

func (tg *TaskGroup) check() error {
	switch {
	case tg.exiting && tg.pending == 0:
		return fmt.Errorf("task group is finished: %w", ErrInvalidState)
	case tg.aborting:
		return fmt.Errorf("task group is shutting down: %w", ErrInvalidState)
	}
	return nil
}

func (tg *TaskGroup) add(c *futureCore) {
	tg.pending++
	if c.done() { // an eager task that already ended
		tg.taskDone(c)
		return
	}
	tg.children = append(tg.children, c)
	c.addDone(func() { tg.taskDone(c) })
}

func (tg *TaskGroup) taskDone(c *futureCore) {
	tg.pending--
	if tg.onCompleted != nil && tg.pending == 0 && !tg.onCompleted.done() {
		tg.onCompleted.finish(nil)
	}
	if c.state == cancelled {
		return
	}
	err := c.errOf()
	if err == nil {
		return
	}
	tg.errs = append(tg.errs, err)
	if tg.parent.fut.done() {
		tg.loop.CallExceptionHandler(ErrorContext{
			Message: "Task has errored out but its parent task is already completed",
			Err:     err,
			Task:    tg.parent.self,
		})
		return
	}
	if !tg.aborting && !tg.parentAsked {
		tg.abort()
		tg.parentAsked = true
		tg.parent.cancel("")
	}
}

func (tg *TaskGroup) abort() {
	tg.aborting = true
	for _, c := range tg.children {
		if !c.done() {
			c.cancel("")
		}
	}
}

func (tg *TaskGroup) exit(co *Co, err error) error {
	tg.exiting = true
	var propagate error
	if err != nil && errors.Is(err, ErrCancelled) {
		propagate = err
	}
	if err != nil && !tg.aborting {
		tg.abort()
	}
	for tg.pending > 0 {
		tg.onCompleted = &futureCore{loop: tg.loop}
		if e := awaitCore(co, tg.onCompleted); e != nil {
			if e == errAbandoned {
				return e
			}
			if !tg.aborting {
				propagate = e
				tg.abort()
			}
		}
		tg.onCompleted = nil
	}
	if tg.parentAsked && tg.parent.uncancel() == 0 {
		// Nobody else asked for the parent's cancellation.
		propagate = nil
	}
	if propagate != nil && len(tg.errs) == 0 {
		return propagate
	}
	if err != nil && !errors.Is(err, ErrCancelled) {
		tg.errs = append(tg.errs, err)
	}
	if len(tg.errs) == 0 {
		return nil
	}
	if tg.parent.cancels > 0 {
		// Cancelled from outside too: keep that request pending, so the
		// parent's next await delivers it (asyncio 3.13's uncancel/cancel).
		tg.parent.uncancel()
		tg.parent.cancel("")
	}
	return &TaskGroupError{Errs: tg.errs}
}
