package conformance

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/kernel"
)

// Callbacks, Stop, Close and running: the loop's own life cycle.
var kernelLoopCases = []kcase{
	{name: "kernel/call-soon/fifo-exactly-once", run: kCallSoonFIFO},
	{name: "kernel/call-soon/scheduled-by-batch-waits", run: kCallSoonNextIteration},
	{name: "kernel/handle/cancel-before-run", run: kHandleCancelBefore},
	{name: "kernel/handle/cancel-after-run", run: kHandleCancelAfter},
	{name: "kernel/handle/cancel-in-same-batch", run: kHandleCancelSameBatch},
	{name: "kernel/handle/stale-handle-after-reuse", run: kHandleStale},
	{name: "kernel/call-soon/context", run: kCallSoonContext},
	{name: "kernel/stop/before-run-polls-once", run: kStopBeforeRun},
	{name: "kernel/stop/during-run-finishes-batch", run: kStopDuringRun},
	{name: "kernel/close/running-loop-fails", run: kCloseRunning},
	{name: "kernel/close/idempotent", run: kCloseTwice},
	{name: "kernel/close/scheduling-fails", run: kClosedScheduling},
	{name: "kernel/close/ends-pending-tasks", run: kCloseEndsTasks},
	{name: "kernel/close/ends-open-asyncgens", run: kCloseEndsGens},
	{name: "kernel/run/nested-fails", run: kNestedRun},
	{name: "kernel/run/other-loop-same-goroutine", run: kOtherLoop},
	{name: "kernel/run/other-loop-from-task", run: kOtherLoopFromTask},
	{name: "kernel/run/running-loop", run: kRunningLoop},
	{name: "kernel/run-until-complete/outcomes", run: kRunUntilComplete},
	{name: "kernel/run-until-complete/stopped-early", run: kRunUntilStopped},
	{name: "kernel/threadsafe/wakes-blocked-loop", run: kThreadsafeWakes},
	{name: "kernel/threadsafe/cancel-before-run", run: kThreadsafeCancel},
}

func kCallSoonFIFO(k *kt) {
	l := k.newLoop()
	var got []int
	for i := 0; i < 300; i++ {
		_, err := l.CallSoon(func() { got = append(got, i) })
		k.must(err, "CallSoon")
	}
	k.runOnce(l)
	want := make([]int, 300)
	for i := range want {
		want[i] = i
	}
	require.Equal(k, want, got, "rule: CallSoon callbacks run in the order they were scheduled, all in the next iteration")
	k.runOnce(l)
	require.Len(k, got, 300, "rule: a CallSoon callback runs exactly once")
}

func kCallSoonNextIteration(k *kt) {
	l := k.newLoop()
	var order []string
	_, err := l.CallSoon(func() {
		order = append(order, "first")
		_, err := l.CallSoon(func() { order = append(order, "scheduled-by-first") })
		assert.NoError(k, err, "rule: CallSoon from a callback succeeds")
	})
	k.must(err, "CallSoon")
	_, err = l.CallSoon(func() { order = append(order, "second") })
	k.must(err, "CallSoon")
	k.runOnce(l)
	require.Equal(k, []string{"first", "second"}, order,
		"rule: an iteration runs only the callbacks that were ready when it began; what they schedule waits for the next one")
	k.runOnce(l)
	require.Equal(k, []string{"first", "second", "scheduled-by-first"}, order,
		"rule: a callback scheduled by the previous batch runs in the next iteration")
}

func kHandleCancelBefore(k *kt) {
	l := k.newLoop()
	ran := false
	h, err := l.CallSoon(func() { ran = true })
	k.must(err, "CallSoon")
	require.False(k, h.Cancelled(), "rule: a fresh handle is not cancelled")
	h.Cancel()
	require.True(k, h.Cancelled(), "rule: Cancelled reports true after Cancel")
	h.Cancel() // cancelling twice is harmless
	k.runOnce(l)
	require.False(k, ran, "rule: a callback cancelled before it is due never runs")
	require.True(k, h.Cancelled(), "rule: a cancelled handle stays cancelled after the loop skipped it")
}

func kHandleCancelAfter(k *kt) {
	l := k.newLoop()
	runs := 0
	h, err := l.CallSoon(func() { runs++ })
	k.must(err, "CallSoon")
	k.runOnce(l)
	require.Equal(k, 1, runs)
	h.Cancel()
	require.False(k, h.Cancelled(), "rule: cancelling a callback that already ran does nothing; Cancelled stays false")
	k.runOnce(l)
	require.Equal(k, 1, runs, "rule: a callback runs once")
}

func kHandleCancelSameBatch(k *kt) {
	l := k.newLoop()
	var bRan, cRan bool
	var hb, hc kernel.Handle
	var err error
	_, err = l.CallSoon(func() { hb.Cancel() })
	k.must(err, "CallSoon")
	hb, err = l.CallSoon(func() { bRan = true; hc.Cancel() })
	k.must(err, "CallSoon")
	hc, err = l.CallSoon(func() { cRan = true })
	k.must(err, "CallSoon")
	k.runOnce(l)
	require.False(k, bRan, "rule: a callback cancelled by an earlier callback of the same batch does not run")
	require.True(k, hb.Cancelled(), "rule: the handle cancelled within the batch reports Cancelled")
	require.True(k, cRan, "rule: a cancelled callback has no effects (it did not run, so it could not cancel its neighbour)")
}

// kHandleStale checks that a Handle whose callback ran cannot reach the
// callbacks scheduled after it, even though the loop recycles its records.
func kHandleStale(k *kt) {
	l := k.newLoop()
	first, err := l.CallSoon(func() {})
	k.must(err, "CallSoon")
	k.runOnce(l)
	ran := 0
	var later []kernel.Handle
	for i := 0; i < 64; i++ {
		h, err := l.CallSoon(func() { ran++ })
		k.must(err, "CallSoon")
		later = append(later, h)
	}
	first.Cancel()
	for i, h := range later {
		require.False(k, h.Cancelled(), "rule: cancelling a finished handle must not cancel a later callback (handle %d)", i)
	}
	k.runOnce(l)
	require.Equal(k, 64, ran, "rule: cancelling a finished handle must not cancel a later callback")
}

func kCallSoonContext(k *kt) {
	l := k.newLoop()
	ctx, cancel := context.WithCancel(context.Background())
	var got []string
	_, err := l.CallSoonContext(ctx, func(c context.Context) { got = append(got, "live") })
	k.must(err, "CallSoonContext")
	dead, cancelDead := context.WithCancel(context.Background())
	h, err := l.CallSoonContext(dead, func(context.Context) { got = append(got, "dead") })
	k.must(err, "CallSoonContext")
	cancelDead()
	var th kernel.Handle
	done := make(chan struct{})
	go func() {
		defer close(done)
		var err error
		th, err = l.CallSoonThreadsafeContext(dead, func(context.Context) { got = append(got, "dead-threadsafe") })
		assert.NoError(k, err)
		_, err = l.CallSoonThreadsafeContext(ctx, func(context.Context) { got = append(got, "live-threadsafe") })
		assert.NoError(k, err)
	}()
	<-done
	k.runOnce(l)
	cancel()
	require.Equal(k, []string{"live", "live-threadsafe"}, got, "rule: a CallSoon(Threadsafe)Context callback whose context is done when it is due is skipped")
	require.True(k, h.Cancelled(), "rule: a callback skipped for its context reports Cancelled")
	require.True(k, th.Cancelled(), "rule: a threadsafe callback skipped for its context reports Cancelled")
}

func kStopBeforeRun(k *kt) {
	l := k.newLoop()
	var order []string
	_, err := l.CallSoon(func() {
		order = append(order, "a")
		_, err := l.CallSoon(func() { order = append(order, "b") })
		assert.NoError(k, err)
	})
	k.must(err, "CallSoon")
	// A far-off timer must not change the zero-timeout poll; a due one runs.
	_, err = l.CallLater(time.Hour, func() { order = append(order, "far-timer") })
	k.must(err, "CallLater")
	_, err = l.CallLater(-time.Millisecond, func() { order = append(order, "due-timer") })
	k.must(err, "CallLater")
	// A descriptor that is already readable: the single poll reports it.
	r, w := k.socketpair()
	k.write(w, []byte("x"))
	require.NoError(k, l.AddReader(r, func() { order = append(order, "io") }))
	l.rec.waits()
	l.Stop()
	require.NoError(k, k.runForever(l, "Stop before RunForever"), "rule: RunForever after Stop returns nil")
	require.ElementsMatch(k, []string{"a", "due-timer", "io"}, order,
		"rule: Stop before RunForever runs the callbacks that were ready, due timers and I/O callbacks of its one poll, and nothing they schedule")
	_, err = l.RemoveReader(r)
	require.NoError(k, err)
	order = []string{"a"}
	waits := l.rec.waits()
	require.Equal(k, []time.Duration{0}, waits, "rule: Stop before RunForever polls the selector exactly once, with a zero timeout")
	require.False(k, l.IsRunning(), "rule: IsRunning is false after RunForever returned")

	// The callbacks left over run in the next run.
	k.runOnce(l)
	require.Equal(k, []string{"a", "b"}, order, "rule: callbacks left by a stopped run run in the next one")
}

func kStopDuringRun(k *kt) {
	l := k.newLoop()
	var order []string
	_, err := l.CallSoon(func() {
		order = append(order, "stopper")
		l.Stop()
		_, err := l.CallSoon(func() { order = append(order, "scheduled-by-stopper") })
		assert.NoError(k, err)
	})
	k.must(err, "CallSoon")
	_, err = l.CallSoon(func() { order = append(order, "same-batch") })
	k.must(err, "CallSoon")
	require.NoError(k, k.runForever(l, "Stop during a run"))
	require.Equal(k, []string{"stopper", "same-batch"}, order,
		"rule: Stop during a run lets the current batch finish; callbacks it scheduled wait for the next run")

	// RunForever again: the leftover runs; a callback stops the loop again.
	_, err = l.CallSoon(func() { _, _ = l.CallSoon(l.Stop) })
	k.must(err, "CallSoon")
	require.NoError(k, k.runForever(l, "RunForever after a stopped run"))
	require.Equal(k, []string{"stopper", "same-batch", "scheduled-by-stopper"}, order,
		"rule: RunForever after a stop runs the callbacks left over")
}

func kCloseRunning(k *kt) {
	l := k.newLoop()
	var closeErr error
	ranAfter := false
	_, err := l.CallSoon(func() {
		require.True(k, l.IsRunning(), "rule: IsRunning is true inside a callback")
		closeErr = l.Close()
		_, err := l.CallSoon(func() { ranAfter = true; l.Stop() })
		assert.NoError(k, err, "rule: a failed Close leaves the loop usable")
	})
	k.must(err, "CallSoon")
	require.NoError(k, k.runForever(l, "Close on a running loop"))
	require.ErrorIs(k, closeErr, kernel.ErrRunning, "rule: Close on a running loop fails with ErrRunning")
	require.True(k, ranAfter, "rule: the loop goes on after a refused Close")
	require.False(k, l.IsClosed(), "rule: a refused Close does not close the loop")
}

func kCloseTwice(k *kt) {
	l := k.newLoop()
	require.False(k, l.IsClosed(), "rule: a new loop is not closed")
	require.NoError(k, l.Close(), "rule: Close on an idle loop succeeds")
	require.True(k, l.IsClosed(), "rule: IsClosed is true after Close")
	require.NoError(k, l.Close(), "rule: closing twice does nothing")
}

func kClosedScheduling(k *kt) {
	l := k.newLoop()
	fut := kernel.CreateFuture[int](l.Loop)
	require.NoError(k, l.Close())
	nop := func() {}
	checks := []struct {
		name string
		err  error
	}{}
	add := func(name string, err error) {
		checks = append(checks, struct {
			name string
			err  error
		}{name, err})
	}
	_, err := l.CallSoon(nop)
	add("CallSoon", err)
	_, err = l.CallLater(time.Millisecond, nop)
	add("CallLater", err)
	_, err = l.CallAt(l.Time(), nop)
	add("CallAt", err)
	_, err = l.CallSoonThreadsafe(nop)
	add("CallSoonThreadsafe", err)
	_, err = kernel.CreateTask(l.Loop, func(*kernel.Co) (int, error) { return 0, nil })
	add("CreateTask", err)
	a, _ := k.socketpair()
	add("AddReader", l.AddReader(a, nop))
	add("AddWriter", l.AddWriter(a, nop))
	add("AddSignalHandler", l.AddSignalHandler(syscall.SIGUSR1, nop))
	_, err = kernel.RunInExecutor(l.Loop, nil, func(context.Context) (int, error) { return 1, nil })
	add("RunInExecutor", err)
	add("RunForever", l.RunForever())
	add("RunUntilComplete", l.RunUntilComplete(fut))
	for _, c := range checks {
		assert.ErrorIs(k, c.err, kernel.ErrClosed, "rule: %s on a closed loop fails with ErrClosed", c.name)
	}
	// Removing is not scheduling: Close dropped every watch and handler, so
	// the Remove calls report that there was none (asyncio returns False).
	removed, err := l.RemoveReader(a)
	assert.NoError(k, err, "rule: RemoveReader on a closed loop reports false without an error")
	assert.False(k, removed)
	removed, err = l.RemoveWriter(a)
	assert.NoError(k, err, "rule: RemoveWriter on a closed loop reports false without an error")
	assert.False(k, removed)
	removed, err = l.RemoveSignalHandler(syscall.SIGUSR1)
	assert.NoError(k, err, "rule: RemoveSignalHandler on a closed loop reports false without an error")
	assert.False(k, removed)
}

// kCloseEndsTasks: Close discards pending work; a task suspended in an
// await is ended (its await returns an error matching ErrClosed, its defers
// run, its goroutine is released) and a task that never started never runs.
func kCloseEndsTasks(k *kt) {
	l := k.newLoop()
	never := kernel.CreateFuture[int](l.Loop)
	var awaitErr error
	deferred := false
	_, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
		defer func() { deferred = true }()
		_, awaitErr = never.Await(co)
		return 0, awaitErr
	})
	k.must(err, "CreateTask")
	k.runOnce(l) // the task starts and suspends
	require.False(k, deferred)
	started := false
	_, err = kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) { started = true; return 0, nil })
	k.must(err, "CreateTask")
	require.NoError(k, l.Close())
	require.True(k, deferred, "rule: Close ends a suspended task's coroutine, running its defers")
	require.ErrorIs(k, awaitErr, kernel.ErrClosed, "rule: the abandoned task's await returns an error matching ErrClosed")
	require.False(k, started, "rule: a task that had not started when the loop closed never runs")
}

// kCloseEndsGens: an async generator left open when the loop closes has
// its body ended (defers run, an await in its clean-up fails with an error
// matching ErrClosed) instead of parking its goroutine forever.
func kCloseEndsGens(k *kt) {
	l := k.newLoop()
	var cleanupErr error
	cleaned := false
	g, err := kernel.NewAsyncGen(l.Loop, func(co *kernel.Co, yield func(int) bool) error {
		defer func() {
			cleanupErr = co.Yield()
			cleaned = true
		}()
		for i := 0; yield(i); i++ {
		}
		return nil
	})
	k.must(err, "NewAsyncGen")
	_, err = runTask(k, l, func(co *kernel.Co) (int, error) {
		_, _, err := g.Next(co)
		return 0, err
	})
	require.NoError(k, err)
	require.False(k, cleaned)
	require.NoError(k, l.Close())
	require.True(k, cleaned, "rule: Close ends an open async generator's body, running its clean-up")
	require.ErrorIs(k, cleanupErr, kernel.ErrClosed, "rule: an await in the clean-up of an abandoned generator fails with an error matching ErrClosed")
}

func kNestedRun(k *kt) {
	l := k.newLoop()
	fut := kernel.CreateFuture[int](l.Loop)
	var errForever, errUntil error
	_, err := l.CallSoon(func() {
		errForever = l.RunForever()
		errUntil = l.RunUntilComplete(fut)
		l.Stop()
	})
	k.must(err, "CallSoon")
	require.NoError(k, k.runForever(l, "nested run"))
	require.ErrorIs(k, errForever, kernel.ErrRunning, "rule: RunForever inside a running loop fails with ErrRunning")
	require.ErrorIs(k, errUntil, kernel.ErrRunning, "rule: RunUntilComplete inside a running loop fails with ErrRunning")
	require.False(k, fut.Done(), "rule: a refused RunUntilComplete leaves its future alone")
}

func kOtherLoop(k *kt) {
	l1, l2 := k.newLoop(), k.newLoop()
	fut := kernel.CreateFuture[int](l2.Loop)
	var errForever, errUntil error
	_, err := l1.CallSoon(func() {
		errForever = l2.RunForever()
		errUntil = l2.RunUntilComplete(fut)
		l1.Stop()
	})
	k.must(err, "CallSoon")
	require.NoError(k, k.runForever(l1, "other loop"))
	require.ErrorIs(k, errForever, kernel.ErrOtherLoopRunning, "rule: running a second loop on a goroutine already running one fails with ErrOtherLoopRunning")
	require.ErrorIs(k, errUntil, kernel.ErrOtherLoopRunning, "rule: RunUntilComplete of a second loop on a goroutine already running one fails with ErrOtherLoopRunning")
	require.False(k, l2.IsRunning(), "rule: the refused loop is not left running")
	// Once the first loop returned, the second runs on the same goroutine.
	k.runsCallbacks(l2, "after one loop returns, another can run on the same goroutine")
}

// kOtherLoopFromTask is kOtherLoop from inside a coroutine: a task runs on
// its loop's behalf, so the one-loop rule applies to it as well.
func kOtherLoopFromTask(k *kt) {
	l1, l2 := k.newLoop(), k.newLoop()
	nestedRan := false
	_, err := l2.CallSoon(func() { nestedRan = true })
	k.must(err, "CallSoon")
	l2.Stop()
	task, err := runTask(k, l1, func(co *kernel.Co) (error, error) {
		return l2.RunForever(), nil
	})
	require.NoError(k, err)
	inner, _ := task.Result()
	require.ErrorIs(k, inner, kernel.ErrOtherLoopRunning, "rule: a task cannot run another loop inside its own (ErrOtherLoopRunning)")
	require.False(k, nestedRan, "rule: the refused loop ran none of its callbacks")
	sameErr := error(nil)
	_, err = runTask(k, l1, func(co *kernel.Co) (struct{}, error) {
		sameErr = l1.RunForever()
		return struct{}{}, nil
	})
	require.NoError(k, err)
	require.ErrorIs(k, sameErr, kernel.ErrRunning, "rule: a task cannot run its own loop again (ErrRunning)")
}

// kRunningLoop: RunningLoop names the loop on its goroutine; a coroutine
// also reaches its loop through Co.Loop (and RunningLoop, see
// kEdgeRunningLoopInTask).
func kRunningLoop(k *kt) {
	l := k.newLoop()
	require.Nil(k, kernel.RunningLoop(), "rule: RunningLoop is nil outside a running loop")
	var inCallback, inTask *kernel.Loop
	_, err := l.CallSoon(func() { inCallback = kernel.RunningLoop() })
	k.must(err, "CallSoon")
	_, err = runTask(k, l, func(co *kernel.Co) (int, error) {
		if err := co.Yield(); err != nil {
			return 0, err
		}
		inTask = co.Loop()
		return 0, nil
	})
	require.NoError(k, err)
	require.True(k, l.Loop == inCallback, "rule: RunningLoop inside a callback is the loop running it (got %p, want %p)", inCallback, l.Loop)
	require.True(k, l.Loop == inTask, "rule: Co.Loop inside a task is the loop running it (got %p, want %p)", inTask, l.Loop)
	require.Nil(k, kernel.RunningLoop(), "rule: RunningLoop is nil again once the loop returned")
}

func kRunUntilComplete(k *kt) {
	l := k.newLoop()
	// Success: nil error, value through Result.
	f := kernel.CreateFuture[string](l.Loop)
	_, err := l.CallSoon(func() { f.SetResult("ok") })
	k.must(err, "CallSoon")
	require.NoError(k, k.runUntil(l, f, "RunUntilComplete"), "rule: RunUntilComplete returns nil for a successful future")
	v, err := f.Result()
	require.NoError(k, err)
	require.Equal(k, "ok", v)
	require.False(k, l.IsRunning(), "rule: the loop is stopped after RunUntilComplete")

	// Failure: the future's error.
	boom := errors.New("boom")
	g := kernel.CreateFuture[string](l.Loop)
	_, err = l.CallLater(time.Millisecond, func() { g.SetException(boom) })
	k.must(err, "CallLater")
	require.ErrorIs(k, k.runUntil(l, g, "RunUntilComplete"), boom, "rule: RunUntilComplete returns the future's error")

	// A future that is already done returns at once.
	require.NoError(k, k.runUntil(l, f, "RunUntilComplete on a done future"), "rule: RunUntilComplete on a done future returns its outcome")

	// A future of another loop is refused.
	other := k.newLoop()
	foreign := kernel.CreateFuture[int](other.Loop)
	require.ErrorIs(k, l.RunUntilComplete(foreign), kernel.ErrDifferentLoop, "rule: RunUntilComplete refuses a future of another loop")
	require.False(k, l.IsRunning())
}

func kRunUntilStopped(k *kt) {
	l := k.newLoop()
	f := kernel.CreateFuture[int](l.Loop)
	_, err := l.CallSoon(l.Stop)
	k.must(err, "CallSoon")
	require.ErrorIs(k, k.runUntil(l, f, "RunUntilComplete stopped early"), kernel.ErrStoppedBeforeDone,
		"rule: RunUntilComplete returns ErrStoppedBeforeDone when the loop stops first")
	// The stop RunUntilComplete attached to f must be gone: completing f
	// later must not stop an unrelated run.
	reachedEnd := false
	_, err = l.CallSoon(func() { f.SetResult(1) })
	k.must(err, "CallSoon")
	_, err = l.CallLater(20*time.Millisecond, func() { reachedEnd = true; l.Stop() })
	k.must(err, "CallLater")
	require.NoError(k, k.runForever(l, "run after an early-stopped RunUntilComplete"))
	require.True(k, reachedEnd, "rule: RunUntilComplete removes its stop callback from the future when it returns early")

	// Stop before RunUntilComplete: one iteration, then the same error.
	g := kernel.CreateFuture[int](l.Loop)
	ran := false
	_, err = l.CallSoon(func() { ran = true })
	k.must(err, "CallSoon")
	l.Stop()
	require.ErrorIs(k, k.runUntil(l, g, "Stop before RunUntilComplete"), kernel.ErrStoppedBeforeDone,
		"rule: Stop before RunUntilComplete runs one iteration and returns ErrStoppedBeforeDone")
	require.True(k, ran, "rule: that iteration runs the ready callbacks")
}

func kThreadsafeWakes(k *kt) {
	l := k.newLoop()
	const goroutines, each = 8, 50
	count := 0
	l.rec.waits()
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < each; i++ {
				if _, err := l.CallSoonThreadsafe(func() {
					count++
					if count == goroutines*each {
						l.Stop()
					}
				}); err != nil {
					k.Errorf("rule: CallSoonThreadsafe on an open loop succeeds: %v", err)
					return
				}
			}
		}()
	}
	// Release the producers only once the loop is blocked in its selector
	// with nothing to do.
	waitThen(l, func() { close(start) })
	err := k.runForever(l, "CallSoonThreadsafe wakes the loop")
	wg.Wait()
	require.NoError(k, err)
	require.Equal(k, goroutines*each, count, "rule: every CallSoonThreadsafe callback runs, exactly once")
	waits := l.rec.waits()
	require.NotEmpty(k, waits)
	require.Equal(k, time.Duration(-1), waits[0], "rule: an idle loop waits in its selector with no timeout (-1), so the wake is what ended it")
}

func kThreadsafeCancel(k *kt) {
	l := k.newLoop()
	ran := false
	var h kernel.Handle
	done := make(chan struct{})
	go func() {
		defer close(done)
		var err error
		h, err = l.CallSoonThreadsafe(func() { ran = true })
		assert.NoError(k, err)
	}()
	<-done
	h.Cancel()
	require.True(k, h.Cancelled(), "rule: a CallSoonThreadsafe handle can be cancelled on the loop goroutine")
	k.runOnce(l)
	require.False(k, ran, "rule: a cancelled CallSoonThreadsafe callback does not run")
}
