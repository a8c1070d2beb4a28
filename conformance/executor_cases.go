package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/sdk"
)

var executorCases = []ecase{
	{name: "executor/results-and-errors", run: func(e *et) {
		ex := e.newExecutor()
		ctx := e.Context()
		got, err := execDouble.Call(ctx, ex, 21)
		require.NoError(e, err, "rule: a call returns the function's result")
		assert.Equal(e, 42, got, "rule: a call returns the function's result")

		_, err = execFail.Call(ctx, ex, "no luck")
		var ce *sdk.CallError
		require.ErrorAs(e, err, &ce, "rule: a function's error is the call's *sdk.CallError")
		assert.Equal(e, "conformance.fail", ce.Func, "rule: CallError.Func names the function called")
		assert.Equal(e, "no luck", ce.Message, "rule: CallError.Message is the function's error text")

		_, err = ex.Call(ctx, "conformance.no-such-function", nil)
		assert.ErrorIs(e, err, sdk.ErrUnknownFunc, "rule: an unregistered name wraps sdk.ErrUnknownFunc")

		_, err = ex.Call(ctx, execDouble.Name(), []byte("not json"))
		require.ErrorAs(e, err, &ce, "rule: an argument that does not decode is the function's failure")
	}},
	{name: "executor/concurrent-calls", run: func(e *et) {
		ex := e.newExecutor()
		var wg sync.WaitGroup
		n := 16
		if e.cfg.Caps.FailFast {
			n = e.cfg.Caps.Capacity // more would be refused, by design
		}
		errs := make([]error, n)
		for i := range errs {
			wg.Go(func() {
				got, err := execDouble.Call(e.Context(), ex, i)
				if err == nil && got != 2*i {
					err = fmt.Errorf("call %d returned %d", i, got)
				}
				errs[i] = err
			})
		}
		wg.Wait()
		require.NoError(e, errors.Join(errs...), "rule: concurrent calls each get their own result")
	}},
	{name: "executor/panic-is-the-calls-error", run: func(e *et) {
		ex := e.newExecutor()
		_, err := execPanic.Call(e.Context(), ex, "boom")
		var ce *sdk.CallError
		require.ErrorAs(e, err, &ce, "rule: a panic in the function is the call's *sdk.CallError")
		assert.Contains(e, ce.Message, "panic: boom", "rule: the CallError says it was a panic, and its value")
		got, err := execDouble.Call(e.Context(), ex, 2)
		require.NoError(e, err, "rule: a panic does not break the executor")
		assert.Equal(e, 4, got)
	}},
	{name: "executor/os-exit-fails-only-its-call", needs: "crash-isolation", run: func(e *et) {
		e.workerDies("a worker that exits during a call fails it with sdk.ErrBackendDied", "exit status 7",
			func(ex sdk.Executor) error { _, err := execExit.Call(e.Context(), ex, 7); return err })
	}},
	{name: "executor/fatal-panic-fails-only-its-call", needs: "crash-isolation", run: func(e *et) {
		e.workerDies("a panic that kills the worker fails the call with sdk.ErrBackendDied", "exit status 2",
			func(ex sdk.Executor) error {
				_, err := execGoPanic.Call(e.Context(), ex, "off the call's goroutine")
				return err
			})
	}},
	{name: "executor/sigkill-mid-call", needs: "crash-isolation", run: func(e *et) {
		ex := e.newExecutor()
		e.AllowIncidents("the case kills the worker")
		d := e.dir()
		started := filepath.Join(d, "started")
		res := make(chan error, 1)
		go func() {
			_, err := execWait.Call(e.Context(), ex, waitArg{Started: started, MaxMS: 30000})
			res <- err
		}()
		pid, err := strconv.Atoi(e.waitFile(started, "the call's start"))
		require.NoError(e, err)
		require.NotEqual(e, os.Getpid(), pid, "rule: an isolated executor runs functions in another process")
		require.NoError(e, syscall.Kill(pid, syscall.SIGKILL))
		select {
		case err := <-res:
			require.ErrorIs(e, err, sdk.ErrBackendDied, "rule: a call whose worker is killed fails with sdk.ErrBackendDied")
			assert.True(e, mentions(err, "killed"), "rule: the error says the worker was killed; got %v", err)
		case <-time.After(execSettle):
			e.Errorf("rule: a call whose worker is killed fails at once; still waiting after %v", execSettle)
			e.FailNow()
		}
		e.goesOn(ex)
	}},
	{name: "executor/cancel-before-start", run: func(e *et) {
		ex := e.newExecutor()
		d := e.dir()
		ctx, cancel := context.WithCancel(e.Context())
		cancel()
		_, err := execWait.Call(ctx, ex, waitArg{Started: filepath.Join(d, "started"), MaxMS: 1})
		require.ErrorIs(e, err, context.Canceled, "rule: a call whose context is already done fails with its error")
		// Give a wrongly started call time to show.
		got, err := execDouble.Call(e.Context(), ex, 1)
		require.NoError(e, err)
		assert.Equal(e, 2, got)
		time.Sleep(50 * time.Millisecond)
		assert.NoFileExists(e, filepath.Join(d, "started"), "rule: a call cancelled before it started never starts")
	}},
	{name: "executor/cancel-while-queued", needs: "queue", run: func(e *et) {
		ex := e.newExecutor()
		d := e.dir()
		release := filepath.Join(d, "release")
		busy := e.occupy(ex, e.cfg.Caps.Workers, release, d)
		ctx, cancel := context.WithCancel(e.Context())
		queued := make(chan error, 1)
		go func() {
			_, err := execWait.Call(ctx, ex, waitArg{Started: filepath.Join(d, "queued-started"), MaxMS: 1})
			queued <- err
		}()
		time.Sleep(50 * time.Millisecond) // let it queue
		cancel()
		select {
		case err := <-queued:
			require.ErrorIs(e, err, context.Canceled, "rule: a queued call whose context ends fails with its error")
		case <-time.After(execSettle):
			e.Errorf("rule: a queued call whose context ends fails at once")
			e.FailNow()
		}
		require.NoError(e, os.WriteFile(release, nil, 0o600))
		require.NoError(e, busy(), "rule: the calls that were running finish")
		got, err := execDouble.Call(e.Context(), ex, 3)
		require.NoError(e, err)
		assert.Equal(e, 6, got)
		assert.NoFileExists(e, filepath.Join(d, "queued-started"), "rule: a call cancelled while queued never starts")
	}},
	{name: "executor/cancel-during-call", run: func(e *et) {
		ex := e.newExecutor()
		d := e.dir()
		started, done := filepath.Join(d, "started"), filepath.Join(d, "done")
		ctx, cancel := context.WithCancel(e.Context())
		res := make(chan error, 1)
		go func() {
			_, err := execWait.Call(ctx, ex, waitArg{Started: started, Done: done, MaxMS: 30000})
			res <- err
		}()
		e.waitFile(started, "the call's start")
		t0 := time.Now()
		cancel()
		select {
		case err := <-res:
			require.ErrorIs(e, err, context.Canceled, "rule: a call cancelled while running fails with the context's error")
		case <-time.After(execSettle):
			e.Errorf("rule: a call cancelled while running returns at once")
			e.FailNow()
		}
		assert.Less(e, time.Since(t0), 5*time.Second, "rule: a cancelled call returns at once")
		// The function ends by its context only if it was told: else it
		// waits out MaxMS, past waitFile's patience.
		assert.Equal(e, "context: context canceled", e.waitFile(done, "rule: the function's context is cancelled with its caller's: the function's end"),
			"rule: the function's context is cancelled with its caller's")
		e.goesOn(ex)
	}},
	{name: "executor/abandoned-call-is-stopped-after-grace", needs: "abandon", run: func(e *et) {
		ex := e.newExecutor()
		d := e.dir()
		started := filepath.Join(d, "started")
		ctx, cancel := context.WithCancel(e.Context())
		res := make(chan error, 1)
		go func() {
			_, err := execWait.Call(ctx, ex, waitArg{Started: started, Done: filepath.Join(d, "done"), Ignore: true, MaxMS: 60000})
			res <- err
		}()
		pid, err := strconv.Atoi(e.waitFile(started, "the call's start"))
		require.NoError(e, err)
		cancel()
		require.ErrorIs(e, <-res, context.Canceled, "rule: an abandoned call returns the context's error at once")
		deadline := time.Now().Add(e.cfg.Caps.Grace + execSettle)
		for syscall.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				e.Errorf("rule: a worker still running an abandoned call after the grace period (%v) is stopped; pid %d lives", e.cfg.Caps.Grace, pid)
				e.FailNow()
			}
			time.Sleep(10 * time.Millisecond)
		}
		e.goesOn(ex)
		assert.NoFileExists(e, filepath.Join(d, "done"), "rule: an abandoned call does not run to its end")
	}},
	{name: "executor/back-pressure", needs: "bounded-queue", run: func(e *et) {
		ex := e.newExecutor()
		d := e.dir()
		release := filepath.Join(d, "release")
		busy := e.occupy(ex, e.cfg.Caps.Capacity, release, d)
		wait := 200 * time.Millisecond
		if e.cfg.Caps.FailFast {
			wait = execSettle // it must not be what ends the call
		}
		ctx, cancel := context.WithTimeout(e.Context(), wait)
		defer cancel()
		_, err := execWait.Call(ctx, ex, waitArg{Started: filepath.Join(d, "over"), MaxMS: 1})
		if e.cfg.Caps.FailFast {
			require.Error(e, err, "rule: a call over a full queue fails at once")
			assert.NotErrorIs(e, err, context.DeadlineExceeded, "rule: a fail-fast executor does not wait for room")
		} else {
			require.ErrorIs(e, err, context.DeadlineExceeded, "rule: a call over a full queue waits for room within its context")
		}
		require.NoError(e, os.WriteFile(release, nil, 0o600))
		require.NoError(e, busy(), "rule: the calls admitted all finish")
		assert.NoFileExists(e, filepath.Join(d, "over"), "rule: a call pushed back never started")
		e.goesOn(ex)
	}},
	// Two cases rather than one, so that each has the runner's whole time
	// limit: under -race on a loaded machine moving 100 MiB takes seconds.
	{name: "executor/100MiB-argument", needs: "large-payloads", alone: true, run: func(e *et) {
		ex := e.newExecutor()
		arg := execPattern(100 << 20)
		res, err := ex.Call(e.Context(), "conformance.checksum", arg)
		require.NoError(e, err, "rule: a 100 MiB argument reaches the function")
		assert.Equal(e, fmt.Sprintf("%d:%d", len(arg), checksum(arg)), string(res), "rule: the function sees the argument's every byte")
	}},
	{name: "executor/100MiB-result", needs: "large-payloads", alone: true, run: func(e *et) {
		ex := e.newExecutor()
		res, err := ex.Call(e.Context(), "conformance.produce", []byte(strconv.Itoa(100<<20)))
		require.NoError(e, err, "rule: a 100 MiB result comes back")
		require.Equal(e, 100<<20, len(res), "rule: the result comes back whole")
		assert.Equal(e, patternChecksum(100<<20), checksum(res), "rule: the result comes back byte for byte")
	}},
	{name: "executor/close-fails-calls", run: func(e *et) {
		ex := e.newExecutor()
		d := e.dir()
		started := filepath.Join(d, "started")
		res := make(chan error, 1)
		go func() {
			_, err := execWait.Call(e.Context(), ex, waitArg{Started: started, MaxMS: 30000})
			res <- err
		}()
		e.waitFile(started, "the call's start")
		require.NoError(e, ex.Close())
		select {
		case err := <-res:
			assert.ErrorIs(e, err, sdk.ErrExecutorClosed, "rule: a call in flight when the executor closes fails with sdk.ErrExecutorClosed")
		case <-time.After(execSettle):
			e.Errorf("rule: Close fails the calls in flight")
			e.FailNow()
		}
		_, err := execDouble.Call(e.Context(), ex, 1)
		assert.ErrorIs(e, err, sdk.ErrExecutorClosed, "rule: a call after Close fails with sdk.ErrExecutorClosed")
	}},
}

// workerDies runs call, whose function makes its worker die, and checks
// that the call fails by rule, saying how the worker ended (status), and
// that the executor goes on.
func (e *et) workerDies(rule, status string, call func(ex sdk.Executor) error) {
	ex := e.newExecutor()
	e.AllowIncidents("the function makes its worker die")
	err := call(ex)
	require.ErrorIs(e, err, sdk.ErrBackendDied, "rule: "+rule)
	assert.True(e, mentions(err, status), "rule: the error says how the worker ended; got %v", err)
	e.goesOn(ex)
}

// goesOn checks that the executor still runs calls, on every worker.
func (e *et) goesOn(ex sdk.Executor) {
	e.Helper()
	n := max(e.cfg.Caps.Workers, 1) * 2
	for i := range n {
		got, err := execDouble.Call(e.Context(), ex, i)
		require.NoError(e, err, "rule: the executor goes on after a call failed")
		require.Equal(e, 2*i, got, "rule: a call returns the function's result")
	}
}

// occupy starts n calls that wait for release, waits until the executor
// has started as many as it runs at once, and returns a wait for all n.
func (e *et) occupy(ex sdk.Executor, n int, release, d string) func() error {
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := execWait.Call(e.Context(), ex, waitArg{
				Started: filepath.Join(d, fmt.Sprintf("busy-%d", i)), Release: release, MaxMS: 30000})
			errs <- err
		}()
	}
	running := n
	if w := e.cfg.Caps.Workers; w > 0 {
		running = min(n, w)
	}
	deadline := time.Now().Add(execSettle)
	for {
		m, _ := filepath.Glob(filepath.Join(d, "busy-*"))
		if len(m) >= running {
			break
		}
		if time.Now().After(deadline) {
			e.Errorf("only %d of %d blocking calls started", len(m), running)
			e.FailNow()
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the rest reach the queue
	return func() error {
		var all []error
		for range n {
			select {
			case err := <-errs:
				all = append(all, err)
			case <-time.After(execSettle):
				return fmt.Errorf("a blocking call did not finish within %v of its release", execSettle)
			}
		}
		return errors.Join(all...)
	}
}
