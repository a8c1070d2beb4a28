package conformance

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
)

// The exception handler, debug mode and signal handlers.
var kernelHandlerCases = []kcase{
	{name: "kernel/exception/callback-panic", run: kExcCallbackPanic},
	{name: "kernel/exception/handler-panics", run: kExcHandlerPanics},
	{name: "kernel/exception/default-logs-fields", run: kExcDefaultLogs},
	{name: "kernel/exception/set-get-restore", run: kExcSetGet},
	{name: "kernel/debug/get-set", run: kDebugGetSet},
	{name: "kernel/debug/environment", run: kDebugEnv},
	{name: "kernel/debug/slow-callback", run: kDebugSlow},
	{name: "kernel/debug/wrong-goroutine", run: kDebugWrongGoroutine},
	{name: "kernel/debug/coroutines-are-the-loop", run: kDebugCoroutines},
	{name: "kernel/signal/validation", run: kSignalValidation},
	{name: "kernel/signal/handler-runs-on-loop", run: kSignalDelivered},
	{name: "kernel/signal/replace-and-remove", run: kSignalReplace},
}

func kExcCallbackPanic(k *kt) {
	l := k.newLoop()
	var got []kernel.ErrorContext
	l.SetExceptionHandler(func(lp *kernel.Loop, ctx kernel.ErrorContext) {
		assert.True(k, l.Loop == lp, "rule: the handler receives the loop")
		got = append(got, ctx)
	})
	h, err := l.CallSoon(func() { panic("callback blew up") })
	k.must(err, "CallSoon")
	after := false
	_, err = l.CallSoon(func() { after = true })
	k.must(err, "CallSoon")
	k.runOnce(l)
	require.True(k, after, "rule: the loop goes on after a callback panicked (the rest of the batch runs)")
	require.Len(k, got, 1, "rule: a panic in a callback reaches the exception handler once")
	ctx := got[0]
	require.NotEmpty(k, ctx.Message, "rule: the context has a message")
	var pe *kernel.PanicError
	require.ErrorAs(k, ctx.Err, &pe, "rule: the context's Err is a *PanicError")
	require.Equal(k, "callback blew up", pe.Value)
	require.Equal(k, h, ctx.Handle, "rule: the context names the handle of the failing callback")

	// Timers too.
	th, err := l.CallLater(0, func() { panic(errors.New("timer blew up")) })
	k.must(err, "CallLater")
	k.runOnce(l)
	require.Len(k, got, 2, "rule: a panic in a timer callback reaches the exception handler")
	require.Equal(k, th.Handle, got[1].Handle)
	require.ErrorContains(k, got[1].Err, "timer blew up")
}

func kExcHandlerPanics(k *kt) {
	l := k.newLoop()
	l.SetExceptionHandler(func(*kernel.Loop, kernel.ErrorContext) { panic("handler is broken") })
	_, err := l.CallSoon(func() { panic("first failure") })
	k.must(err, "CallSoon")
	after := false
	_, err = l.CallSoon(func() { after = true })
	k.must(err, "CallSoon")
	k.runOnce(l)
	require.True(k, after, "rule: the loop goes on after the exception handler itself panicked")
	log := l.log.String()
	require.Contains(k, log, "Unhandled error in exception handler", "rule: a panicking custom handler is reported through the default handler")
	require.Contains(k, log, "handler is broken", "rule: the report names the handler's panic")
	require.Contains(k, log, "first failure", "rule: the report includes the original context")
}

func kExcDefaultLogs(k *kt) {
	l := k.newLoop()
	f := kernel.CreateFuture[int](l.Loop)
	l.CallExceptionHandler(kernel.ErrorContext{Message: "custom message here", Err: errors.New("the-cause"), Future: f})
	log := l.log.String()
	require.Contains(k, log, "custom message here", "rule: the default handler logs the message")
	require.Contains(k, log, "the-cause", "rule: the default handler logs the error")
	require.Contains(k, log, "future=", "rule: the default handler logs the future")
	require.Contains(k, log, "[ERROR]", "rule: the default handler logs at error level")

	_, err := l.CallSoon(func() { panic("unhandled one") })
	k.must(err, "CallSoon")
	k.runOnce(l)
	log = l.log.String()
	require.Contains(k, log, "unhandled one", "rule: with no custom handler, a callback panic is logged")
	require.Contains(k, log, "stack=", "rule: a logged panic includes its stack")
	require.Contains(k, log, "handle=", "rule: a logged callback failure names its handle")

	// DefaultExceptionHandler is callable directly, and an empty message
	// gets a default one.
	l.DefaultExceptionHandler(kernel.ErrorContext{Err: errors.New("no message")})
	require.Contains(k, l.log.String(), "no message")
}

func kExcSetGet(k *kt) {
	l := k.newLoop()
	require.Nil(k, l.GetExceptionHandler(), "rule: a new loop uses the default handler (GetExceptionHandler is nil)")
	calls := 0
	l.SetExceptionHandler(func(*kernel.Loop, kernel.ErrorContext) { calls++ })
	require.NotNil(k, l.GetExceptionHandler(), "rule: GetExceptionHandler returns the handler set")
	l.CallExceptionHandler(kernel.ErrorContext{Message: "to the custom handler"})
	require.Equal(k, 1, calls, "rule: CallExceptionHandler calls the custom handler")
	require.NotContains(k, l.log.String(), "to the custom handler", "rule: a custom handler replaces the default")
	l.SetExceptionHandler(nil)
	require.Nil(k, l.GetExceptionHandler(), "rule: SetExceptionHandler(nil) restores the default")
	l.CallExceptionHandler(kernel.ErrorContext{Message: "to the default handler"})
	require.Equal(k, 1, calls)
	require.Contains(k, l.log.String(), "to the default handler", "rule: after SetExceptionHandler(nil) the default handler logs")
}

func kDebugGetSet(k *kt) {
	l := k.newLoop()
	// Without KernelConfig.Debug the suite leaves the choice to the
	// environment, so LOOPKERNEL_DEBUG=1 runs it in debug mode as well.
	env := os.Getenv("LOOPKERNEL_DEBUG")
	want := k.cfg.Debug || (env != "" && env != "0")
	require.Equal(k, want, l.GetDebug(), "rule: WithDebug, or else LOOPKERNEL_DEBUG, sets debug mode")
	l.SetDebug(true)
	require.True(k, l.GetDebug(), "rule: SetDebug(true) turns debug mode on")
	l.SetDebug(false)
	require.False(k, l.GetDebug(), "rule: SetDebug(false) turns debug mode off")
}

// kDebugEnv builds loops directly (not through newLoop, whose
// configuration would override the environment).
func kDebugEnv(k *kt) {
	old, had := os.LookupEnv("LOOPKERNEL_DEBUG")
	k.Cleanup(func() {
		if had {
			os.Setenv("LOOPKERNEL_DEBUG", old)
		} else {
			os.Unsetenv("LOOPKERNEL_DEBUG")
		}
	})
	quiet := kernel.WithLogger(hclog.NewNullLogger())
	build := func(val string, opts ...kernel.Option) bool {
		if val == "<unset>" {
			os.Unsetenv("LOOPKERNEL_DEBUG")
		} else {
			os.Setenv("LOOPKERNEL_DEBUG", val)
		}
		l := kernel.New(k.loopSelector(), append([]kernel.Option{quiet}, opts...)...)
		defer l.Close()
		return l.GetDebug()
	}
	require.True(k, build("1"), "rule: LOOPKERNEL_DEBUG=1 turns debug mode on")
	require.True(k, build("yes"), "rule: any LOOPKERNEL_DEBUG other than \"\" and \"0\" turns debug mode on")
	require.False(k, build("0"), "rule: LOOPKERNEL_DEBUG=0 leaves debug mode off")
	require.False(k, build(""), "rule: an empty LOOPKERNEL_DEBUG leaves debug mode off")
	require.False(k, build("<unset>"), "rule: without LOOPKERNEL_DEBUG debug mode is off")
	require.False(k, build("1", kernel.WithDebug(false)), "rule: WithDebug overrides the environment")
}

func slowCallbackForTest() { time.Sleep(15 * time.Millisecond) }

func kDebugSlow(k *kt) {
	l := k.newLoop(kernel.WithDebug(true))
	l.SetSlowCallbackDuration(10 * time.Millisecond)
	require.Equal(k, 10*time.Millisecond, l.SlowCallbackDuration(), "rule: SlowCallbackDuration returns what was set")
	_, err := l.CallSoon(slowCallbackForTest)
	k.must(err, "CallSoon")
	k.runOnce(l)
	log := l.log.String()
	require.Contains(k, log, "slowCallbackForTest", "rule: debug mode logs a callback slower than SlowCallbackDuration, by name")
	require.Regexp(k, `scheduled_at=\S*conformance/kernel_handler_cases\.go:\d+`, log, "rule: the slow-callback report names the source line that scheduled it, outside the kernel")
	require.Equal(k, 1, strings.Count(log, "Executing"), "rule: a slow callback is reported once (log: %s)", log)

	// Outside debug mode nothing is timed.
	l.SetDebug(false)
	_, err = l.CallSoon(slowCallbackForTest)
	k.must(err, "CallSoon")
	k.runOnce(l)
	require.Equal(k, 1, strings.Count(l.log.String(), "Executing"), "rule: slow callbacks are only reported in debug mode")
}

func kDebugWrongGoroutine(k *kt) {
	l := k.newLoop(kernel.WithDebug(true))
	a, _ := k.socketpair()
	fut := kernel.CreateFuture[int](l.Loop)
	errs := map[string]error{}
	var threadsafeRan atomic.Bool
	_, err := l.CallSoon(func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			nop := func() {}
			_, errs["CallSoon"] = l.CallSoon(nop)
			_, errs["CallLater"] = l.CallLater(time.Hour, nop)
			_, errs["CallAt"] = l.CallAt(l.Time()+time.Hour, nop)
			_, errs["CreateTask"] = kernel.CreateTask(l.Loop, func(*kernel.Co) (int, error) { return 0, nil })
			errs["AddReader"] = l.AddReader(a, nop)
			_, errs["RunInExecutor"] = kernel.RunInExecutor(l.Loop, nil, func(context.Context) (int, error) { return 0, nil })
			errs["Future.SetResult"] = fut.SetResult(1)
			errs["Future.SetException"] = fut.SetException(errors.New("x"))
			_, errs["CallSoonThreadsafe"] = l.CallSoonThreadsafe(func() { threadsafeRan.Store(true); l.Stop() })
		}()
		<-done
	})
	k.must(err, "CallSoon")
	require.NoError(k, k.runForever(l, "wrong goroutine"))
	for _, name := range []string{"CallSoon", "CallLater", "CallAt", "CreateTask", "AddReader", "RunInExecutor", "Future.SetResult", "Future.SetException"} {
		assert.ErrorIs(k, errs[name], kernel.ErrWrongGoroutine, "rule: in debug mode %s from another goroutine while the loop runs fails with ErrWrongGoroutine", name)
	}
	require.NoError(k, errs["CallSoonThreadsafe"], "rule: CallSoonThreadsafe is allowed from any goroutine in debug mode")
	require.True(k, threadsafeRan.Load())
	require.False(k, fut.Done(), "rule: a refused SetResult leaves the future pending")
}

// kDebugCoroutines: a task's coroutine acts for its loop, so debug mode's
// goroutine check must accept the calls it makes.
func kDebugCoroutines(k *kt) {
	l := k.newLoop(kernel.WithDebug(true))
	ran := false
	task, err := runTask(k, l, func(co *kernel.Co) (int, error) {
		if _, err := l.CallSoon(func() { ran = true }); err != nil {
			return 0, err
		}
		if err := co.Sleep(time.Millisecond); err != nil {
			return 0, err
		}
		child, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (int, error) {
			if err := co.Yield(); err != nil {
				return 0, err
			}
			_, err := l.CallLater(time.Hour, func() {})
			return 5, err
		})
		if err != nil {
			return 0, err
		}
		return child.Await(co)
	})
	require.NoError(k, err, "rule: in debug mode a task may schedule callbacks, sleep and create tasks")
	v, _ := task.Result()
	require.Equal(k, 5, v)
	require.True(k, ran)
}

func kSignalValidation(k *kt) {
	l := k.newLoop()
	for _, sig := range []syscall.Signal{0, -1, 65, 100, syscall.SIGKILL, syscall.SIGSTOP} {
		assert.ErrorIs(k, l.AddSignalHandler(sig, func() {}), kernel.ErrInvalidSignal, "rule: AddSignalHandler(%d) fails with ErrInvalidSignal", int(sig))
		_, err := l.RemoveSignalHandler(sig)
		assert.ErrorIs(k, err, kernel.ErrInvalidSignal, "rule: RemoveSignalHandler(%d) fails with ErrInvalidSignal", int(sig))
	}
	removed, err := l.RemoveSignalHandler(syscall.SIGUSR2)
	require.NoError(k, err)
	require.False(k, removed, "rule: RemoveSignalHandler for a signal without a handler reports false")
}

func kSignalDelivered(k *kt) {
	l := k.newLoop()
	calls := 0
	onLoop := false
	require.NoError(k, l.AddSignalHandler(syscall.SIGUSR1, func() {
		calls++
		onLoop = kernel.RunningLoop() == l.Loop
		l.Stop()
	}), "rule: AddSignalHandler accepts SIGUSR1")
	k.Cleanup(func() { l.RemoveSignalHandler(syscall.SIGUSR1) })
	l.rec.waits()
	waitThen(l, func() { unix.Kill(os.Getpid(), syscall.SIGUSR1) })
	require.NoError(k, k.runForever(l, "signal"))
	require.Equal(k, 1, calls, "rule: a signal runs its handler once")
	require.True(k, onLoop, "rule: a signal handler runs as a callback of the loop, on its goroutine")
	waits := l.rec.waits()
	require.NotEmpty(k, waits)
	require.Equal(k, time.Duration(-1), waits[0], "rule: a signal wakes a loop sleeping in its selector with no timeout")

	removed, err := l.RemoveSignalHandler(syscall.SIGUSR1)
	require.NoError(k, err)
	require.True(k, removed, "rule: RemoveSignalHandler reports true when it removed a handler")
	removed, err = l.RemoveSignalHandler(syscall.SIGUSR1)
	require.NoError(k, err)
	require.False(k, removed, "rule: RemoveSignalHandler reports false the second time")
}

func kSignalReplace(k *kt) {
	l := k.newLoop()
	var got []string
	require.NoError(k, l.AddSignalHandler(syscall.SIGUSR2, func() { got = append(got, "old") }))
	k.Cleanup(func() { l.RemoveSignalHandler(syscall.SIGUSR2) })
	require.NoError(k, l.AddSignalHandler(syscall.SIGUSR2, func() { got = append(got, "new"); l.Stop() }),
		"rule: a second AddSignalHandler for the same signal replaces the handler")
	waitThen(l, func() { unix.Kill(os.Getpid(), syscall.SIGUSR2) })
	require.NoError(k, k.runForever(l, "replaced signal handler"))
	require.Equal(k, []string{"new"}, got, "rule: only the replacing handler runs")
}
