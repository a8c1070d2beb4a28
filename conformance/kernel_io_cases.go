package conformance

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
)

// Descriptor watching, executors and async generators.
var kernelIOCases = []kcase{
	{name: "kernel/fd/reader", run: kFDReader},
	{name: "kernel/fd/writer", run: kFDWriter},
	{name: "kernel/fd/replace-callback", run: kFDReplace},
	{name: "kernel/fd/reader-and-writer", run: kFDBoth},
	{name: "kernel/fd/remove-in-same-batch", run: kFDRemoveSameBatch},
	{name: "kernel/fd/invalid", run: kFDInvalid},
	{name: "kernel/fd/not-starved-by-busy-callbacks", run: kFDNotStarved},
	{name: "kernel/executor/result", run: kExecResult},
	{name: "kernel/executor/panic-and-error", run: kExecPanic},
	{name: "kernel/executor/custom-and-default", run: kExecCustom},
	{name: "kernel/executor/cancelled-future", run: kExecCancelled},
	{name: "kernel/asyncgen/iterate", run: kGenIterate},
	{name: "kernel/asyncgen/body-error", run: kGenError},
	{name: "kernel/asyncgen/aclose", run: kGenAclose},
	{name: "kernel/asyncgen/already-running", run: kGenRunning},
	{name: "kernel/asyncgen/cancel-consumer", run: kGenCancelConsumer},
	{name: "kernel/asyncgen/shutdown", run: kGenShutdown},
}

func kFDReader(k *kt) {
	l := k.newLoop()
	a, b := k.socketpair()
	var got []byte
	require.NoError(k, l.AddReader(a, func() {
		buf := make([]byte, 16)
		n, err := unix.Read(a, buf)
		if err == nil {
			got = append(got, buf[:n]...)
		}
		l.Stop()
	}), "rule: AddReader on a socket succeeds")
	// Nothing to read: an iteration does not call the reader.
	k.runOnce(l)
	require.Empty(k, got, "rule: a reader is not called while its descriptor is not readable")
	k.write(b, []byte("ping"))
	require.NoError(k, k.runForever(l, "reader"))
	require.Equal(k, "ping", string(got), "rule: a reader runs when its descriptor becomes readable")

	removed, err := l.RemoveReader(a)
	require.NoError(k, err)
	require.True(k, removed, "rule: RemoveReader reports true when a reader was removed")
	removed, err = l.RemoveReader(a)
	require.NoError(k, err)
	require.False(k, removed, "rule: RemoveReader reports false when there was no reader")

	// A removed reader is not called any more, even with data waiting.
	k.write(b, []byte("x"))
	k.runOnce(l)
	require.Equal(k, "ping", string(got), "rule: a removed reader is not called")
}

func kFDWriter(k *kt) {
	l := k.newLoop()
	a, _ := k.socketpair()
	calls := 0
	require.NoError(k, l.AddWriter(a, func() { calls++; l.Stop() }), "rule: AddWriter on a socket succeeds")
	require.NoError(k, k.runForever(l, "writer"))
	require.Equal(k, 1, calls, "rule: a writer runs when its descriptor is writable")
	// Level-triggered: still writable, called again.
	require.NoError(k, k.runForever(l, "writer again"))
	require.Equal(k, 2, calls, "rule: a writer keeps being called while its descriptor stays writable")
	removed, err := l.RemoveWriter(a)
	require.NoError(k, err)
	require.True(k, removed, "rule: RemoveWriter reports true when a writer was removed")
	removed, err = l.RemoveWriter(a)
	require.NoError(k, err)
	require.False(k, removed, "rule: RemoveWriter reports false when there was no writer")
	k.runOnce(l)
	require.Equal(k, 2, calls, "rule: a removed writer is not called")
}

func kFDReplace(k *kt) {
	l := k.newLoop()
	a, b := k.socketpair()
	var got []string
	require.NoError(k, l.AddReader(a, func() { got = append(got, "old") }))
	require.NoError(k, l.AddReader(a, func() { got = append(got, "new"); k.drain(a); l.Stop() }),
		"rule: a second AddReader for the same descriptor succeeds")
	k.write(b, []byte("x"))
	require.NoError(k, k.runForever(l, "replaced reader"))
	require.Equal(k, []string{"new"}, got, "rule: a second AddReader replaces the callback")
	removed, err := l.RemoveReader(a)
	require.NoError(k, err)
	require.True(k, removed)
	removed, _ = l.RemoveReader(a)
	require.False(k, removed, "rule: a replaced reader is one registration; one RemoveReader removes it")
}

func kFDBoth(k *kt) {
	l := k.newLoop()
	a, b := k.socketpair()
	reads, writes := 0, 0
	require.NoError(k, l.AddReader(a, func() { reads++; k.drain(a) }))
	require.NoError(k, l.AddWriter(a, func() { writes++ }))
	k.write(b, []byte("x"))
	k.runOnce(l)
	require.Equal(k, 1, reads, "rule: reader and writer of one descriptor both run when it is readable and writable")
	require.Equal(k, 1, writes)
	removed, err := l.RemoveWriter(a)
	require.NoError(k, err)
	require.True(k, removed)
	k.write(b, []byte("y"))
	_, err = l.CallLater(20*time.Millisecond, l.Stop) // let readiness arrive
	k.must(err, "CallLater")
	require.NoError(k, k.runForever(l, "reader after removing the writer"))
	require.Equal(k, 2, reads, "rule: removing the writer keeps the reader of the same descriptor")
	require.Equal(k, 1, writes, "rule: a removed writer is not called")
}

// kFDRemoveSameBatch: a callback that removes another descriptor's reader
// stops it even when that reader is already queued in the same batch.
func kFDRemoveSameBatch(k *kt) {
	l := k.newLoop()
	a1, b1 := k.socketpair()
	a2, b2 := k.socketpair()
	calls := map[int]int{}
	other := map[int]int{a1: a2, a2: a1}
	for _, fd := range []int{a1, a2} {
		require.NoError(k, l.AddReader(fd, func() {
			calls[fd]++
			_, err := l.RemoveReader(other[fd])
			assert.NoError(k, err)
		}))
	}
	k.write(b1, []byte("x"))
	k.write(b2, []byte("x"))
	// Both are readable before the first poll, so a level-triggered
	// selector reports them together; iterate until one reader ran.
	deadline := time.Now().Add(settle)
	for calls[a1]+calls[a2] == 0 && time.Now().Before(deadline) {
		k.runOnce(l)
	}
	// The case only means something if that one poll reported both.
	require.GreaterOrEqual(k, l.rec.lastN.Load(), int32(2),
		"rule: (selector) a level-triggered selector reports every ready descriptor in one Wait; the kernel rule below cannot be checked without it")
	require.Equal(k, 1, calls[a1]+calls[a2], "rule: a reader removed by an earlier callback of the same batch is not called (calls: %v)", calls)
}

func kFDInvalid(k *kt) {
	l := k.newLoop()
	require.ErrorIs(k, l.AddReader(-1, func() {}), kernel.ErrInvalidFD, "rule: AddReader on a negative descriptor fails with ErrInvalidFD")
	require.ErrorIs(k, l.AddWriter(-7, func() {}), kernel.ErrInvalidFD, "rule: AddWriter on a negative descriptor fails with ErrInvalidFD")
	// A descriptor that is not open fails (the back-end refuses it) and
	// leaves no registration behind.
	r, w := k.pipe()
	k.closeFD(w)
	k.closeFD(r)
	require.Error(k, l.AddReader(r, func() {}), "rule: AddReader on a closed descriptor fails")
	removed, err := l.RemoveReader(r)
	require.NoError(k, err)
	require.False(k, removed, "rule: a failed AddReader leaves no reader registered")
}

// kFDNotStarved: callbacks that keep rescheduling themselves never leave the
// ready queue empty, yet I/O readiness, due timers and other goroutines'
// callbacks must still get their turn (asyncio polls every iteration; the
// kernel may ration its polls, but not forever).
func kFDNotStarved(k *kt) {
	l := k.newLoop()
	a, b := k.socketpair()
	var readerRan, timerRan, threadsafeRan bool
	spins := 0
	var spin func()
	spin = func() {
		spins++
		if readerRan && timerRan && threadsafeRan {
			l.Stop()
			return
		}
		_, err := l.CallSoon(spin)
		assert.NoError(k, err)
	}
	for range 4 { // several spinners, so every batch has work
		_, err := l.CallSoon(spin)
		k.must(err, "CallSoon")
	}
	require.NoError(k, l.AddReader(a, func() { readerRan = true; k.drain(a) }))
	_, err := l.CallLater(2*time.Millisecond, func() { timerRan = true })
	k.must(err, "CallLater")
	_, err = l.CallSoon(func() {
		k.write(b, []byte("x"))
		go l.CallSoonThreadsafe(func() { threadsafeRan = true })
	})
	k.must(err, "CallSoon")
	require.NoError(k, k.runForever(l, "busy callbacks with I/O, a timer and a threadsafe callback pending"))
	require.True(k, readerRan && timerRan && threadsafeRan, "rule: a busy loop still runs ready I/O, due timers and threadsafe callbacks")
	k.Logf("spinner callbacks before everything ran: %d", spins)
}

func kExecResult(k *kt) {
	l := k.newLoop()
	var onLoop atomic.Bool
	f, err := kernel.RunInExecutor(l.Loop, nil, func(context.Context) (string, error) {
		onLoop.Store(kernel.RunningLoop() != nil)
		return "from the executor", nil
	})
	k.must(err, "RunInExecutor")
	require.NoError(k, k.runUntil(l, f, "executor result"))
	v, err := f.Result()
	require.NoError(k, err)
	require.Equal(k, "from the executor", v, "rule: RunInExecutor's future carries the function's result")
	require.False(k, onLoop.Load(), "rule: the function runs off the loop goroutine")
}

func kExecPanic(k *kt) {
	l := k.newLoop()
	f, err := kernel.RunInExecutor(l.Loop, nil, func(context.Context) (int, error) { panic("executor panic") })
	k.must(err, "RunInExecutor")
	err = k.runUntil(l, f, "executor panic")
	var pe *kernel.PanicError
	require.ErrorAs(k, err, &pe, "rule: a panic in an executor function becomes a *PanicError on its future")
	require.Equal(k, "executor panic", pe.Value)

	boom := errors.New("boom")
	g, err := kernel.RunInExecutor(l.Loop, nil, func(context.Context) (int, error) { return 0, boom })
	k.must(err, "RunInExecutor")
	require.ErrorIs(k, k.runUntil(l, g, "executor error"), boom, "rule: an executor function's error becomes its future's error")
}

// countingExecutor runs work on goroutines and counts submissions.
type countingExecutor struct {
	submitted atomic.Int32
	wg        sync.WaitGroup
	shut      atomic.Bool
}

func (e *countingExecutor) Submit(fn func()) error {
	if e.shut.Load() {
		return kernel.ErrExecutorShutdown
	}
	e.submitted.Add(1)
	e.wg.Add(1)
	go func() { defer e.wg.Done(); fn() }()
	return nil
}

func (e *countingExecutor) Shutdown(wait bool) {
	e.shut.Store(true)
	if wait {
		e.wg.Wait()
	}
}

func kExecCustom(k *kt) {
	l := k.newLoop()
	explicit := &countingExecutor{}
	f, err := kernel.RunInExecutor(l.Loop, explicit, func(context.Context) (int, error) { return 1, nil })
	k.must(err, "RunInExecutor")
	require.NoError(k, k.runUntil(l, f, "explicit executor"))
	require.EqualValues(k, 1, explicit.submitted.Load(), "rule: RunInExecutor uses the executor it is given")

	def, def2 := &countingExecutor{}, &countingExecutor{}
	l.SetDefaultExecutor(def)
	g, err := kernel.RunInExecutor(l.Loop, nil, func(context.Context) (int, error) { return 2, nil })
	k.must(err, "RunInExecutor")
	require.NoError(k, k.runUntil(l, g, "default executor"))
	require.EqualValues(k, 1, def.submitted.Load(), "rule: RunInExecutor(nil) uses the default executor set")

	sd, err := l.ShutdownDefaultExecutor()
	k.must(err, "ShutdownDefaultExecutor")
	require.NoError(k, k.runUntil(l, sd, "shutdown default executor"), "rule: ShutdownDefaultExecutor's future completes")
	require.True(k, def.shut.Load(), "rule: ShutdownDefaultExecutor shuts the default executor down")
	_, err = kernel.RunInExecutor(l.Loop, nil, func(context.Context) (int, error) { return 0, nil })
	require.ErrorIs(k, err, kernel.ErrExecutorShutdown, "rule: after ShutdownDefaultExecutor, RunInExecutor without an executor fails")
	require.EqualValues(k, 1, def.submitted.Load())
	l.SetDefaultExecutor(def2)
	h, err := kernel.RunInExecutor(l.Loop, nil, func(context.Context) (int, error) { return 3, nil })
	k.must(err, "RunInExecutor after SetDefaultExecutor")
	require.NoError(k, k.runUntil(l, h, "new default executor"))
	require.EqualValues(k, 1, def2.submitted.Load(), "rule: SetDefaultExecutor after a shutdown installs a working default")
	def2.Shutdown(true)

	explicit.Shutdown(true)
	_, err = kernel.RunInExecutor(l.Loop, explicit, func(context.Context) (int, error) { return 0, nil })
	require.ErrorIs(k, err, kernel.ErrExecutorShutdown, "rule: RunInExecutor reports an executor that refuses work")

	// WithExecutor: the default from the start, and not the loop's to shut.
	given := &countingExecutor{}
	l2 := k.newLoop(kernel.WithExecutor(given))
	f2, err := kernel.RunInExecutor(l2.Loop, nil, func(context.Context) (int, error) { return 4, nil })
	k.must(err, "RunInExecutor")
	require.NoError(k, k.runUntil(l2, f2, "WithExecutor"))
	require.EqualValues(k, 1, given.submitted.Load(), "rule: WithExecutor sets the default executor")
	require.NoError(k, l2.Close())
	require.False(k, given.shut.Load(), "rule: Close does not shut down an executor the loop was given")
	given.Shutdown(true)
}

func kExecCancelled(k *kt) {
	l := k.newLoop()
	var handled []kernel.ErrorContext
	l.SetExceptionHandler(func(_ *kernel.Loop, ctx kernel.ErrorContext) { handled = append(handled, ctx) })
	release := make(chan struct{})
	var finished atomic.Bool
	f, err := kernel.RunInExecutor(l.Loop, nil, func(context.Context) (int, error) {
		<-release
		finished.Store(true)
		return 1, nil
	})
	k.must(err, "RunInExecutor")
	require.True(k, f.Cancel(), "rule: an executor future can be cancelled while its function runs")
	close(release)
	// Run until the function's completion has reached the loop.
	var tick func()
	tick = func() {
		if finished.Load() {
			_, _ = l.CallLater(5*time.Millisecond, l.Stop)
			return
		}
		_, _ = l.CallLater(time.Millisecond, tick)
	}
	_, err = l.CallSoon(tick)
	k.must(err, "CallSoon")
	require.NoError(k, k.runForever(l, "cancelled executor future"))
	require.True(k, f.Cancelled(), "rule: a cancelled executor future stays cancelled when the function returns")
	require.Empty(k, handled, "rule: the late result of a cancelled executor future is dropped quietly")
}

// gen returns an async generator yielding 0..n-1 with an await before each
// value, recording clean-up in *cleaned.
func countingGen(k *kt, l *loopFix, n int, cleaned *[]string, name string) *kernel.AsyncGen[int] {
	g, err := kernel.NewAsyncGen(l.Loop, func(co *kernel.Co, yield func(int) bool) (err error) {
		defer func() {
			// Clean-up that awaits, as an async generator's finally may.
			if serr := co.Sleep(time.Millisecond); serr != nil && err == nil {
				err = serr
			}
			*cleaned = append(*cleaned, name)
		}()
		for i := 0; i < n; i++ {
			if err := co.Yield(); err != nil {
				return err
			}
			if !yield(i) {
				return nil
			}
		}
		return nil
	})
	k.must(err, "NewAsyncGen")
	return g
}

func kGenIterate(k *kt) {
	l := k.newLoop()
	var cleaned []string
	g := countingGen(k, l, 3, &cleaned, "g")
	var got []int
	var endErr error
	var again bool
	_, err := runTask(k, l, func(co *kernel.Co) (int, error) {
		for {
			v, ok, err := g.Next(co)
			if !ok {
				endErr = err
				break
			}
			got = append(got, v)
		}
		_, again, _ = g.Next(co)
		return 0, nil
	})
	require.NoError(k, err)
	require.Equal(k, []int{0, 1, 2}, got, "rule: Next returns the generator's values in order, awaiting as the body does")
	require.NoError(k, endErr, "rule: a body that returns nil ends the iteration without error")
	require.False(k, again, "rule: Next after the end keeps reporting the end")
	require.Equal(k, []string{"g"}, cleaned, "rule: a generator's clean-up runs when its body returns")
}

func kGenError(k *kt) {
	l := k.newLoop()
	boom := errors.New("generator failed")
	g, err := kernel.NewAsyncGen(l.Loop, func(co *kernel.Co, yield func(string) bool) error {
		yield("one")
		return boom
	})
	k.must(err, "NewAsyncGen")
	var vals []string
	var endErr error
	_, err = runTask(k, l, func(co *kernel.Co) (int, error) {
		for {
			v, ok, err := g.Next(co)
			if !ok {
				endErr = err
				return 0, nil
			}
			vals = append(vals, v)
		}
	})
	require.NoError(k, err)
	require.Equal(k, []string{"one"}, vals)
	require.ErrorIs(k, endErr, boom, "rule: the body's error is returned by the Next that reaches the end")
}

func kGenAclose(k *kt) {
	l := k.newLoop()
	var cleaned []string
	g := countingGen(k, l, 100, &cleaned, "started")
	fresh := countingGen(k, l, 100, &cleaned, "never-started")
	var first int
	var closeErr, freshErr error
	var after bool
	_, err := runTask(k, l, func(co *kernel.Co) (int, error) {
		v, _, err := g.Next(co)
		if err != nil {
			return 0, err
		}
		first = v
		closeErr = g.Aclose(co)
		_, after, _ = g.Next(co)
		freshErr = fresh.Aclose(co)
		return 0, nil
	})
	require.NoError(k, err)
	require.Equal(k, 0, first)
	require.NoError(k, closeErr, "rule: Aclose of a suspended generator runs its clean-up and returns nil")
	require.False(k, after, "rule: Next after Aclose reports the end")
	require.NoError(k, freshErr)
	require.Equal(k, []string{"started"}, cleaned, "rule: Aclose runs the clean-up of a started generator, awaits included; an unstarted body never runs")
}

// genBody records how a gatedGen's body ended.
type genBody struct {
	awaitErr error // what its await of the gate returned
	cleaned  bool  // its deferred clean-up ran
}

// gatedGen is an async generator on l whose body awaits gate and yields
// its value once.
func (k *kt) gatedGen(l *loopFix, gate *kernel.Future[int]) (*kernel.AsyncGen[int], *genBody) {
	body := &genBody{}
	g, err := kernel.NewAsyncGen(l.Loop, func(co *kernel.Co, yield func(int) bool) error {
		defer func() { body.cleaned = true }()
		v, err := gate.Await(co)
		body.awaitErr = err
		if err != nil {
			return err
		}
		yield(v)
		return nil
	})
	k.must(err, "NewAsyncGen")
	return g, body
}

// nextTask starts a task that takes one value from g.
func (k *kt) nextTask(l *loopFix, g *kernel.AsyncGen[int]) *kernel.Task[int] {
	consumer, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
		v, _, err := g.Next(co)
		return v, err
	})
	k.must(err, "CreateTask")
	return consumer
}

func kGenRunning(k *kt) {
	l := k.newLoop()
	gate := kernel.CreateFuture[int](l.Loop)
	g, _ := k.gatedGen(l, gate)
	consumer := k.nextTask(l, g)
	var nextErr, closeErr error
	intruder, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
		_, _, nextErr = g.Next(co)
		closeErr = g.Aclose(co)
		return 0, gate.SetResult(8)
	})
	k.must(err, "CreateTask")
	require.NoError(k, k.runUntil(l, intruder, "intruding consumer"))
	require.NoError(k, k.runUntil(l, consumer, "first consumer"))
	require.ErrorIs(k, nextErr, kernel.ErrAsyncGenRunning, "rule: Next on a generator another consumer is advancing fails with ErrAsyncGenRunning")
	require.ErrorIs(k, closeErr, kernel.ErrAsyncGenRunning, "rule: Aclose on a generator being advanced fails with ErrAsyncGenRunning")
	v, _ := consumer.Result()
	require.Equal(k, 8, v, "rule: the first consumer is unaffected")
}

// kGenCancelConsumer: cancelling a task suspended in Next delivers the
// cancellation into the generator body at its await; the body's clean-up
// runs and the consumer ends cancelled.
func kGenCancelConsumer(k *kt) {
	l := k.newLoop()
	gate := kernel.CreateFuture[int](l.Loop)
	g, body := k.gatedGen(l, gate)
	consumer := k.nextTask(l, g)
	_, err := l.CallLater(time.Millisecond, func() { consumer.CancelMsg("stop consuming") })
	k.must(err, "CallLater")
	require.ErrorIs(k, k.runUntil(l, consumer, "cancel a consumer inside Next"), kernel.ErrCancelled)
	require.ErrorIs(k, body.awaitErr, kernel.ErrCancelled, "rule: cancelling the consumer delivers a CancelledError at the body's await")
	require.True(k, body.cleaned, "rule: the body's clean-up runs")
	require.True(k, consumer.Cancelled(), "rule: the consumer ends cancelled")
	_, more, _ := runNext(k, l, g)
	require.False(k, more, "rule: a generator whose body returned is finished")
}

// runNext calls g.Next from a fresh task.
func runNext(k *kt, l *loopFix, g *kernel.AsyncGen[int]) (int, bool, error) {
	var v int
	var more bool
	var nextErr error
	_, err := runTask(k, l, func(co *kernel.Co) (int, error) {
		v, more, nextErr = g.Next(co)
		return 0, nil
	})
	require.NoError(k, err)
	return v, more, nextErr
}

func kGenShutdown(k *kt) {
	l := k.newLoop()
	var handled []kernel.ErrorContext
	l.SetExceptionHandler(func(_ *kernel.Loop, ctx kernel.ErrorContext) { handled = append(handled, ctx) })
	var cleaned []string
	a := countingGen(k, l, 10, &cleaned, "a")
	b := countingGen(k, l, 10, &cleaned, "b")
	done := countingGen(k, l, 1, &cleaned, "done")
	boom := errors.New("clean-up failed")
	bad, err := kernel.NewAsyncGen(l.Loop, func(co *kernel.Co, yield func(int) bool) error {
		for yield(1) {
		}
		if err := co.Yield(); err != nil {
			return err
		}
		return boom
	})
	k.must(err, "NewAsyncGen")
	_, err = runTask(k, l, func(co *kernel.Co) (int, error) {
		for _, g := range []*kernel.AsyncGen[int]{a, b, bad} {
			if _, _, err := g.Next(co); err != nil {
				return 0, err
			}
		}
		for {
			if _, ok, err := done.Next(co); !ok {
				return 0, err
			}
		}
	})
	require.NoError(k, err)
	require.Equal(k, []string{"done"}, cleaned)

	shut, err := l.ShutdownAsyncGens()
	k.must(err, "ShutdownAsyncGens")
	require.NoError(k, k.runUntil(l, shut, "ShutdownAsyncGens"), "rule: ShutdownAsyncGens completes even when a clean-up fails")
	require.ElementsMatch(k, []string{"done", "a", "b"}, cleaned, "rule: ShutdownAsyncGens finalises every open generator, running its clean-up (awaits included), and only once")
	require.Len(k, handled, 1, "rule: a generator's clean-up error goes to the exception handler")
	require.ErrorIs(k, handled[0].Err, boom)
	require.NotEmpty(k, handled[0].Message)

	// Generators created after shutdown are not tracked, and that is logged.
	_, err = kernel.NewAsyncGen(l.Loop, func(co *kernel.Co, yield func(int) bool) error { return nil })
	k.must(err, "NewAsyncGen")
	require.Contains(k, l.log.String(), "ShutdownAsyncGens", "rule: creating a generator after ShutdownAsyncGens logs a warning")
}
