package conformance

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/kernel"
)

// Futures: states, outcomes, done callbacks.
var kernelFutureCases = []kcase{
	{name: "kernel/future/result", run: kFutureResult},
	{name: "kernel/future/pending-is-invalid-state", run: kFuturePending},
	{name: "kernel/future/set-twice", run: kFutureSetTwice},
	{name: "kernel/future/exception", run: kFutureException},
	{name: "kernel/future/cancel", run: kFutureCancel},
	{name: "kernel/future/callbacks-scheduled", run: kFutureCallbacks},
	{name: "kernel/future/other-loop", run: kFutureOtherLoop},
}

func kFutureResult(k *kt) {
	l := k.newLoop()
	f := kernel.CreateFuture[int](l.Loop)
	require.False(k, f.Done(), "rule: a new future is pending")
	require.NoError(k, f.SetResult(7), "rule: SetResult on a pending future succeeds")
	require.True(k, f.Done(), "rule: a future is done once its result is set")
	require.False(k, f.Cancelled())
	v, err := f.Result()
	require.NoError(k, err)
	require.Equal(k, 7, v, "rule: Result returns the value set")
	require.NoError(k, f.Err(), "rule: Err of a successful future is nil")
	require.True(k, l.Loop == f.Loop(), "rule: a future belongs to the loop it was created on")
}

func kFuturePending(k *kt) {
	l := k.newLoop()
	f := kernel.CreateFuture[int](l.Loop)
	_, err := f.Result()
	require.ErrorIs(k, err, kernel.ErrInvalidState, "rule: Result of a pending future fails with ErrInvalidState")
	require.ErrorIs(k, f.Err(), kernel.ErrInvalidState, "rule: Err of a pending future is ErrInvalidState")
}

func kFutureSetTwice(k *kt) {
	l := k.newLoop()
	f := kernel.CreateFuture[int](l.Loop)
	require.NoError(k, f.SetResult(1))
	require.ErrorIs(k, f.SetResult(2), kernel.ErrInvalidState, "rule: SetResult on a done future fails with ErrInvalidState")
	require.ErrorIs(k, f.SetException(errors.New("x")), kernel.ErrInvalidState, "rule: SetException on a done future fails with ErrInvalidState")
	require.False(k, f.Cancel(), "rule: Cancel on a done future reports false")
	v, err := f.Result()
	require.NoError(k, err)
	require.Equal(k, 1, v, "rule: the first outcome stands")

	g := kernel.CreateFuture[int](l.Loop)
	require.Error(k, g.SetException(nil), "rule: SetException(nil) is refused")
	require.False(k, g.Done(), "rule: a refused SetException leaves the future pending")
}

func kFutureException(k *kt) {
	l := k.newLoop()
	f := kernel.CreateFuture[string](l.Loop)
	boom := errors.New("boom")
	require.NoError(k, f.SetException(boom))
	require.True(k, f.Done())
	require.False(k, f.Cancelled(), "rule: a failed future is not cancelled")
	v, err := f.Result()
	require.ErrorIs(k, err, boom, "rule: Result returns the error set")
	require.Zero(k, v, "rule: a failed future's value is the zero value")
	require.ErrorIs(k, f.Err(), boom)
}

func kFutureCancel(k *kt) {
	l := k.newLoop()
	f := kernel.CreateFuture[int](l.Loop)
	require.True(k, f.CancelMsg("shutting down"), "rule: Cancel on a pending future reports true")
	require.True(k, f.Done(), "rule: a cancelled future is done")
	require.True(k, f.Cancelled(), "rule: Cancelled reports true")
	_, err := f.Result()
	require.ErrorIs(k, err, kernel.ErrCancelled, "rule: Result of a cancelled future matches ErrCancelled")
	var ce *kernel.CancelledError
	require.ErrorAs(k, err, &ce, "rule: a cancelled future's error is a *CancelledError")
	require.Equal(k, "shutting down", ce.Msg, "rule: the cancel message travels in the CancelledError")
	require.False(k, f.Cancel(), "rule: cancelling twice reports false")
	require.ErrorIs(k, f.SetResult(1), kernel.ErrInvalidState, "rule: SetResult on a cancelled future fails with ErrInvalidState")
}

func kFutureCallbacks(k *kt) {
	l := k.newLoop()
	f := kernel.CreateFuture[int](l.Loop)
	var got []string
	for _, name := range []string{"a", "b", "c"} {
		f.AddDoneCallback(func(ff *kernel.Future[int]) {
			v, _ := ff.Result()
			got = append(got, fmt.Sprintf("%s=%d", name, v))
		})
	}
	require.NoError(k, f.SetResult(5))
	require.Empty(k, got, "rule: done callbacks are scheduled on the loop, not called by SetResult")
	k.runOnce(l)
	require.Equal(k, []string{"a=5", "b=5", "c=5"}, got, "rule: done callbacks run in the order they were added, once the loop runs")

	// A callback added to a done future is scheduled too, not called at once.
	f.AddDoneCallback(func(*kernel.Future[int]) { got = append(got, "late") })
	require.Len(k, got, 3, "rule: AddDoneCallback on a done future schedules the callback rather than calling it")
	k.runOnce(l)
	require.Equal(k, "late", got[len(got)-1])

	// Cancellation schedules callbacks as well.
	g := kernel.CreateFuture[int](l.Loop)
	cancelled := false
	g.AddDoneCallback(func(gg *kernel.Future[int]) { cancelled = gg.Cancelled() })
	g.Cancel()
	require.False(k, cancelled)
	k.runOnce(l)
	require.True(k, cancelled, "rule: cancelling a future schedules its done callbacks")
	k.runOnce(l)
	require.Len(k, got, 4, "rule: done callbacks run once")
}

func kFutureOtherLoop(k *kt) {
	l, other := k.newLoop(), k.newLoop()
	foreign := kernel.CreateFuture[int](other.Loop)
	task, err := runTask(k, l, func(co *kernel.Co) (int, error) {
		return foreign.Await(co)
	})
	require.ErrorIs(k, err, kernel.ErrDifferentLoop, "rule: awaiting a future of another loop fails with ErrDifferentLoop")
	require.True(k, task.Done())
}

// Tasks: coroutines, awaiting, cancellation, factories.
var kernelTaskCases = []kcase{
	{name: "kernel/task/await-future", run: kTaskAwaitFuture},
	{name: "kernel/task/await-task", run: kTaskAwaitTask},
	{name: "kernel/task/error-propagation", run: kTaskError},
	{name: "kernel/task/panic", run: kTaskPanic},
	{name: "kernel/task/cancel-delivered", run: kTaskCancelDelivered},
	{name: "kernel/task/cancel-caught", run: kTaskCancelCaught},
	{name: "kernel/task/cancel-before-start", run: kTaskCancelBeforeStart},
	{name: "kernel/task/cancel-inner-task", run: kTaskCancelInner},
	{name: "kernel/task/cancel-self", run: kTaskCancelSelf},
	{name: "kernel/task/cancel-awaited-future", run: kTaskAwaitedFutureCancelled},
	{name: "kernel/task/await-itself", run: kTaskAwaitSelf},
	{name: "kernel/task/interleave", run: kTaskInterleave},
	{name: "kernel/task/await-done-future-does-not-yield", run: kTaskAwaitDone},
	{name: "kernel/task/sleep", run: kTaskSleep},
	{name: "kernel/task/factory", run: kTaskFactory},
	{name: "kernel/task/eager-factory", run: kTaskEager},
	{name: "kernel/task/no-set-methods", run: kTaskNoSetMethods},
}

func kTaskAwaitFuture(k *kt) {
	l := k.newLoop()
	f := kernel.CreateFuture[string](l.Loop)
	_, err := l.CallLater(2*time.Millisecond, func() { f.SetResult("hello") })
	k.must(err, "CallLater")
	started := false
	task, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (string, error) {
		started = true
		v, err := f.Await(co)
		return v + " world", err
	})
	k.must(err, "CreateTask")
	require.False(k, started, "rule: the default task factory schedules the coroutine; CreateTask does not run it")
	require.False(k, task.Done())
	require.NoError(k, k.runUntil(l, task, "task awaiting a future"))
	v, err := task.Result()
	require.NoError(k, err)
	require.Equal(k, "hello world", v, "rule: a task's result is its coroutine's return value")
	require.NotEmpty(k, task.Name(), "rule: a task has a name")
	task.SetName("renamed")
	require.Equal(k, "renamed", task.Name())
}

func kTaskAwaitTask(k *kt) {
	l := k.newLoop()
	inner, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
		if err := co.Sleep(time.Millisecond); err != nil {
			return 0, err
		}
		return 20, nil
	})
	k.must(err, "CreateTask")
	outer, err := runTask(k, l, func(co *kernel.Co) (int, error) {
		v, err := inner.Await(co)
		return v + 1, err
	})
	require.NoError(k, err)
	v, _ := outer.Result()
	require.Equal(k, 21, v, "rule: awaiting a task returns its result")
}

type taskErr struct{ n int }

func (e *taskErr) Error() string { return fmt.Sprintf("task error %d", e.n) }

func kTaskError(k *kt) {
	l := k.newLoop()
	inner, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
		if err := co.Yield(); err != nil {
			return 0, err
		}
		return 0, &taskErr{3}
	})
	k.must(err, "CreateTask")
	var seen error
	outer, err := runTask(k, l, func(co *kernel.Co) (int, error) {
		_, seen = inner.Await(co)
		return 0, fmt.Errorf("outer: %w", seen)
	})
	var te *taskErr
	require.ErrorAs(k, seen, &te, "rule: awaiting a failed task returns its error")
	require.Equal(k, 3, te.n)
	require.ErrorAs(k, err, &te, "rule: a coroutine's returned error becomes its task's error (RunUntilComplete returns it)")
	require.ErrorAs(k, outer.Err(), &te)
	require.False(k, outer.Cancelled(), "rule: a failed task is not cancelled")
	require.ErrorAs(k, inner.Err(), &te)
}

func kTaskPanic(k *kt) {
	l := k.newLoop()
	task, err := runTask(k, l, func(co *kernel.Co) (int, error) {
		if err := co.Yield(); err != nil {
			return 0, err
		}
		panic("kaboom")
	})
	var pe *kernel.PanicError
	require.ErrorAs(k, err, &pe, "rule: a panicking coroutine's task fails with a *PanicError")
	require.Equal(k, "kaboom", pe.Value, "rule: the PanicError carries the panic value")
	require.NotEmpty(k, pe.Stack, "rule: the PanicError carries the stack")
	require.ErrorAs(k, task.Err(), &pe)

	boom := errors.New("boom")
	_, err = runTask(k, l, func(co *kernel.Co) (int, error) { panic(boom) })
	require.ErrorIs(k, err, boom, "rule: a panicked error value is reachable with errors.Is through the PanicError")
	k.runsCallbacks(l, "the loop goes on after a task panicked")
}

func kTaskCancelDelivered(k *kt) {
	l := k.newLoop()
	f := kernel.CreateFuture[int](l.Loop)
	var awaitErr error
	task, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
		_, awaitErr = f.Await(co)
		return 0, awaitErr
	})
	k.must(err, "CreateTask")
	_, err = l.CallLater(time.Millisecond, func() {
		assert.True(k, task.CancelMsg("enough"), "rule: Cancel on a pending task reports true")
	})
	k.must(err, "CallLater")
	err = k.runUntil(l, task, "cancelled task")
	require.ErrorIs(k, awaitErr, kernel.ErrCancelled, "rule: cancelling a task makes the Await it is suspended in return a CancelledError")
	var ce *kernel.CancelledError
	require.ErrorAs(k, awaitErr, &ce)
	require.Equal(k, "enough", ce.Msg, "rule: the cancel message reaches the coroutine")
	require.ErrorIs(k, err, kernel.ErrCancelled, "rule: RunUntilComplete of a cancelled task returns its CancelledError")
	require.True(k, task.Cancelled(), "rule: a coroutine that returns the CancelledError leaves its task cancelled")
	require.True(k, f.Cancelled(), "rule: cancelling a task cancels the future it awaits")
	require.False(k, task.Cancel(), "rule: Cancel on a done task reports false")
}

func kTaskCancelCaught(k *kt) {
	l := k.newLoop()
	f := kernel.CreateFuture[int](l.Loop)
	task, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
		if _, err := f.Await(co); errors.Is(err, kernel.ErrCancelled) {
			// Clean up, even awaiting, then finish normally.
			if err := co.Yield(); err != nil {
				return 0, err
			}
			return 42, nil
		}
		return 0, errors.New("not cancelled")
	})
	k.must(err, "CreateTask")
	_, err = l.CallSoon(func() { task.Cancel() })
	k.must(err, "CallSoon")
	require.NoError(k, k.runUntil(l, task, "task catching its cancellation"),
		"rule: a coroutine that catches its cancellation and returns a value completes normally")
	v, err := task.Result()
	require.NoError(k, err)
	require.Equal(k, 42, v)
	require.False(k, task.Cancelled(), "rule: a task that caught its cancellation is not cancelled")
}

func kTaskCancelBeforeStart(k *kt) {
	l := k.newLoop()
	ran := false
	task, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) { ran = true; return 1, nil })
	k.must(err, "CreateTask")
	require.True(k, task.Cancel(), "rule: Cancel on a task that has not started reports true")
	err = k.runUntil(l, task, "task cancelled before it started")
	require.ErrorIs(k, err, kernel.ErrCancelled)
	require.True(k, task.Cancelled(), "rule: a task cancelled before it started ends cancelled")
	require.False(k, ran, "rule: a task cancelled before it started never runs its coroutine")
}

func kTaskCancelInner(k *kt) {
	l := k.newLoop()
	f := kernel.CreateFuture[int](l.Loop)
	inner, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) { return f.Await(co) })
	k.must(err, "CreateTask")
	var outerSaw error
	outer, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
		_, outerSaw = inner.Await(co)
		return 0, outerSaw
	})
	k.must(err, "CreateTask")
	_, err = l.CallLater(time.Millisecond, func() { outer.Cancel() })
	k.must(err, "CallLater")
	err = k.runUntil(l, outer, "cancel a task awaiting a task")
	require.ErrorIs(k, err, kernel.ErrCancelled)
	require.True(k, inner.Cancelled(), "rule: cancelling a task that awaits another task cancels the inner task")
	require.True(k, f.Cancelled(), "rule: the cancellation reaches the future the inner task awaits")
	require.ErrorIs(k, outerSaw, kernel.ErrCancelled, "rule: the outer coroutine's Await returns a CancelledError")
	require.True(k, outer.Cancelled())
}

// kTaskCancelSelf: a task that cancels itself and returns without awaiting
// again still ends cancelled; one that awaits after cancelling itself gets
// the CancelledError there.
func kTaskCancelSelf(k *kt) {
	l := k.newLoop()
	var self *kernel.Task[int]
	var err error
	self, err = kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
		self.Cancel()
		return 1, nil
	})
	k.must(err, "CreateTask")
	require.ErrorIs(k, k.runUntil(l, self, "self-cancelled task"), kernel.ErrCancelled)
	require.True(k, self.Cancelled(), "rule: a task cancelled while running ends cancelled even if its coroutine then returns a value")

	var yieldErr error
	var t2 *kernel.Task[int]
	t2, err = kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
		t2.Cancel()
		yieldErr = co.Yield()
		return 0, yieldErr
	})
	k.must(err, "CreateTask")
	require.ErrorIs(k, k.runUntil(l, t2, "self-cancelled task"), kernel.ErrCancelled)
	require.ErrorIs(k, yieldErr, kernel.ErrCancelled, "rule: a cancellation requested while running is delivered at the next suspension")
}

// kTaskAwaitedFutureCancelled: a future cancelled by someone else makes the
// awaiting coroutine's Await return a CancelledError; returning it cancels
// the task.
func kTaskAwaitedFutureCancelled(k *kt) {
	l := k.newLoop()
	f := kernel.CreateFuture[int](l.Loop)
	task, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) { return f.Await(co) })
	k.must(err, "CreateTask")
	_, err = l.CallLater(time.Millisecond, func() { f.CancelMsg("gone") })
	k.must(err, "CallLater")
	require.ErrorIs(k, k.runUntil(l, task, "awaited future cancelled"), kernel.ErrCancelled)
	require.True(k, task.Cancelled(), "rule: a coroutine returning a CancelledError leaves its task cancelled")
}

// kTaskAwaitSelf: a task awaiting its own completion would wait forever;
// the await fails instead.
func kTaskAwaitSelf(k *kt) {
	l := k.newLoop()
	var self *kernel.Task[int]
	var awaitErr error
	var err error
	self, err = kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
		_, awaitErr = self.Await(co)
		return 1, nil
	})
	k.must(err, "CreateTask")
	require.NoError(k, k.runUntil(l, self, "task awaiting itself"))
	require.ErrorIs(k, awaitErr, kernel.ErrInvalidState, "rule: a task awaiting itself gets an error instead of waiting forever")
}

func kTaskInterleave(k *kt) {
	l := k.newLoop()
	var order []string
	mk := func(name string) *kernel.Task[int] {
		t, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
			for i := 0; i < 3; i++ {
				order = append(order, fmt.Sprintf("%s%d", name, i))
				if err := co.Yield(); err != nil {
					return 0, err
				}
			}
			return 0, nil
		})
		k.must(err, "CreateTask")
		return t
	}
	mk("a")
	b := mk("b")
	require.NoError(k, k.runUntil(l, b, "interleaved tasks"))
	require.Equal(k, []string{"a0", "b0", "a1", "b1", "a2", "b2"}, order, "rule: Yield lets the other ready tasks run before the coroutine continues")
}

func kTaskAwaitDone(k *kt) {
	l := k.newLoop()
	f := kernel.CreateFuture[int](l.Loop)
	require.NoError(k, f.SetResult(3))
	var order []string
	task, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
		_, err := l.CallSoon(func() { order = append(order, "other") })
		if err != nil {
			return 0, err
		}
		v, err := f.Await(co)
		order = append(order, "after-await")
		return v, err
	})
	k.must(err, "CreateTask")
	require.NoError(k, k.runUntil(l, task, "await a done future"))
	require.Equal(k, []string{"after-await", "other"}, order, "rule: awaiting a done future returns at once, without yielding to the loop")
}

func kTaskSleep(k *kt) {
	l := k.newLoop()
	const d = 20 * time.Millisecond
	var elapsed time.Duration
	_, err := runTask(k, l, func(co *kernel.Co) (int, error) {
		start := time.Now()
		err := co.Sleep(d)
		elapsed = time.Since(start)
		return 0, err
	})
	require.NoError(k, err)
	require.GreaterOrEqual(k, elapsed, d-100*time.Microsecond, "rule: Sleep suspends for at least its duration")

	// A cancelled sleep returns promptly with the cancellation.
	var sleepErr error
	task, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
		sleepErr = co.Sleep(time.Hour)
		return 0, sleepErr
	})
	k.must(err, "CreateTask")
	_, err = l.CallLater(time.Millisecond, func() { task.Cancel() })
	k.must(err, "CallLater")
	require.ErrorIs(k, k.runUntil(l, task, "cancelled sleep"), kernel.ErrCancelled)
	require.ErrorIs(k, sleepErr, kernel.ErrCancelled, "rule: cancelling a sleeping task makes Sleep return a CancelledError")
}

func kTaskFactory(k *kt) {
	l := k.newLoop()
	require.Nil(k, l.GetTaskFactory(), "rule: a new loop uses the default task factory (GetTaskFactory is nil)")
	var seen []kernel.Awaitable
	l.SetTaskFactory(func(lp *kernel.Loop, task kernel.Awaitable, start func()) {
		assert.True(k, l.Loop == lp, "rule: the factory receives the loop")
		seen = append(seen, task)
		_, err := lp.CallSoon(start)
		assert.NoError(k, err)
	})
	require.NotNil(k, l.GetTaskFactory(), "rule: GetTaskFactory returns the factory set")
	task, err := runTask(k, l, func(co *kernel.Co) (int, error) { return 9, nil })
	require.NoError(k, err)
	require.Len(k, seen, 1, "rule: CreateTask goes through the task factory")
	require.True(k, kernel.Awaitable(task) == seen[0], "rule: the factory receives the task CreateTask returns")
	l.SetTaskFactory(nil)
	require.Nil(k, l.GetTaskFactory(), "rule: SetTaskFactory(nil) restores the default")
	_, err = runTask(k, l, func(co *kernel.Co) (int, error) { return 0, nil })
	require.NoError(k, err)
	require.Len(k, seen, 1, "rule: after SetTaskFactory(nil) the old factory is no longer used")
}

func kTaskEager(k *kt) {
	l := k.newLoop()
	l.SetTaskFactory(kernel.EagerTaskFactory)
	var steps []string
	var suspended, immediate *kernel.Task[int]
	_, err := l.CallSoon(func() {
		var err error
		suspended, err = kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
			steps = append(steps, "before-yield")
			if err := co.Yield(); err != nil {
				return 0, err
			}
			steps = append(steps, "after-yield")
			return 1, nil
		})
		assert.NoError(k, err)
		steps = append(steps, "create-returned")
		immediate, err = kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) { return 2, nil })
		assert.NoError(k, err)
		assert.True(k, immediate.Done(), "rule: an eager task that never suspends is done when CreateTask returns")
		l.Stop()
	})
	k.must(err, "CallSoon")
	require.NoError(k, k.runForever(l, "eager tasks"))
	require.Equal(k, []string{"before-yield", "create-returned"}, steps,
		"rule: EagerTaskFactory runs the coroutine synchronously until it first suspends")
	require.NoError(k, k.runUntil(l, suspended, "eager task completion"))
	require.Equal(k, []string{"before-yield", "create-returned", "after-yield"}, steps, "rule: an eager task resumes on the loop after suspending")
	v, _ := immediate.Result()
	require.Equal(k, 2, v)

	// Eager creation from inside a coroutine: the inner task runs at once,
	// the outer one then awaits it (and may not await itself by mistake).
	var trace []string
	outer, err := runTask(k, l, func(co *kernel.Co) (int, error) {
		inner, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
			trace = append(trace, "inner-start")
			if err := co.Yield(); err != nil {
				return 0, err
			}
			trace = append(trace, "inner-end")
			return 10, nil
		})
		if err != nil {
			return 0, err
		}
		trace = append(trace, "outer-after-create")
		v, err := inner.Await(co)
		return v + 1, err
	})
	require.NoError(k, err, "rule: a task may eagerly create and await another")
	ov, _ := outer.Result()
	require.Equal(k, 11, ov)
	require.Equal(k, []string{"inner-start", "outer-after-create", "inner-end"}, trace,
		"rule: an eager task created inside a coroutine runs before CreateTask returns to it")
}

// kTaskNoSetMethods ports test_asyncio's test_task_set_methods: only a task's
// coroutine completes it. asyncio's Task.set_result and set_exception raise
// RuntimeError; a kernel.Task has no such methods at all, nor an exported
// field that would reach a Future's, so the call does not compile. The case
// checks the method set and the fields, then that the task still ends with
// its coroutine's result and hands itself to its done callbacks.
func kTaskNoSetMethods(k *kt) {
	l := k.newLoop()
	task, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (string, error) { return "ko", nil })
	k.must(err, "CreateTask")

	_, canSet := any(task).(interface{ SetResult(string) error })
	require.False(k, canSet, "rule: a task has no SetResult (asyncio: Task does not support set_result)")
	_, canFail := any(task).(interface{ SetException(error) error })
	require.False(k, canFail, "rule: a task has no SetException (asyncio: Task does not support set_exception)")
	tt := reflect.TypeOf(task).Elem()
	for i := range tt.NumField() {
		f := tt.Field(i)
		require.False(k, f.IsExported(), "rule: a task exposes no field (%s) through which a Future's setters could complete it", f.Name)
	}

	var called *kernel.Task[string]
	task.AddDoneCallback(func(t *kernel.Task[string]) { called = t })
	require.NoError(k, k.runUntil(l, task, "task whose setters are refused"))
	v, err := task.Result()
	require.NoError(k, err)
	require.Equal(k, "ko", v, "rule: the task's result is its coroutine's, whatever was tried before it ran")
	k.runOnce(l)
	require.True(k, called == task, "rule: a task's done callback receives the task")
}
