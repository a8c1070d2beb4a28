package executor_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/executor"
	"github.com/loopkernel/loopkernel/policy"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// The pool's behaviour under the executor contract (results, panics,
// deaths, cancellation, back-pressure, 100 MiB) is certified by
// conformance.TestExecutors; these tests cover what is the pool's own:
// its options, and its place in the kernel and the policies.

var (
	pid = sdk.NewFunc("executor-test.pid", func(context.Context, int) (int, error) { return os.Getpid(), nil })
	hog = sdk.NewFunc("executor-test.hog", func(_ context.Context, mib int) (int, error) {
		var keep [][]byte
		for range mib {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		}
		return len(keep), nil
	})
	deadline = sdk.NewFunc("executor-test.deadline", func(ctx context.Context, _ int) (bool, error) {
		_, ok := ctx.Deadline()
		return ok, nil
	})
)

func init() {
	sdk.RegisterFunc("executor-test.echo", func(_ context.Context, b []byte) ([]byte, error) { return b, nil })
}

func newPool(t *testing.T, opts executor.PoolOptions) *executor.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := executor.NewPool(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

func TestPoolRunsInWorkersWithTheCallersDeadline(t *testing.T) {
	p := newPool(t, executor.PoolOptions{Workers: 1, CallTimeout: time.Minute})
	ctx := context.Background()
	w, err := pid.Call(ctx, p, 0)
	require.NoError(t, err)
	assert.NotEqual(t, os.Getpid(), w, "the function ran in another process")
	_, err = boom.Call(ctx, p, 1)
	var ce *sdk.CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "executor-test.panic", ce.Func, "the error names the user's function, not the pool's envelope")

	ok, err := deadline.Call(ctx, p, 0)
	require.NoError(t, err)
	assert.True(t, ok, "CallTimeout gives a call without a deadline one, and it reaches the function")
}

func TestPoolRetiresWorkersAfterMaxTasks(t *testing.T) {
	p := newPool(t, executor.PoolOptions{Workers: 1, MaxTasksPerWorker: 2})
	ctx := context.Background()
	var pids []int
	for range 5 {
		w, err := pid.Call(ctx, p, 0)
		require.NoError(t, err)
		pids = append(pids, w)
	}
	assert.Equal(t, pids[0], pids[1])
	assert.NotEqual(t, pids[1], pids[2], "a worker is replaced after MaxTasksPerWorker calls")
	assert.Equal(t, pids[2], pids[3])
	assert.NotEqual(t, pids[3], pids[4])
}

func TestPoolWorkerOutOfMemoryFailsOnlyItsCall(t *testing.T) {
	if raceEnabled {
		t.Skip("-race: the race detector's shadow memory counts against RLIMIT_DATA")
	}
	p := newPool(t, executor.PoolOptions{Workers: 1, MemoryLimit: 256 << 20})
	ctx := context.Background()
	n, err := hog.Call(ctx, p, 16)
	require.NoError(t, err, "a function within the limit runs")
	assert.Equal(t, 16, n)
	_, err = hog.Call(ctx, p, 1024)
	require.ErrorIs(t, err, sdk.ErrBackendDied)
	assert.Contains(t, err.Error(), "exit status 2", "the Go runtime's out-of-memory exit")
	t.Log(err)
	got, err := double.Call(ctx, p, 5)
	require.NoError(t, err, "the pool goes on with a new worker")
	assert.Equal(t, 10, got)
}

func TestPoolSharedMemoryThreshold(t *testing.T) {
	ctx := context.Background()
	mid := bytes.Repeat([]byte{7}, 1<<20)
	huge := make([]byte, 80<<20)
	// Through shared memory past 1 KiB; inline below.
	p := newPool(t, executor.PoolOptions{Workers: 1, ShmThreshold: 1 << 10})
	for _, b := range [][]byte{nil, []byte("small"), mid, huge} {
		got, err := p.Call(ctx, "executor-test.echo", b)
		require.NoError(t, err)
		require.True(t, bytes.Equal(b, got), "%d bytes came back changed", len(b))
	}
	// Never through shared memory: the worker channel's 64 MiB limit stands.
	q := newPool(t, executor.PoolOptions{Workers: 1, ShmThreshold: -1})
	got, err := q.Call(ctx, "executor-test.echo", mid)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(mid, got))
	_, err = q.Call(ctx, "executor-test.echo", huge)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "over the worker channel")
	got, err = q.Call(ctx, "executor-test.echo", mid)
	require.NoError(t, err, "a refused argument costs the pool nothing")
	assert.Len(t, got, len(mid))
}

func TestPoolThatCannotStartSaysWhy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := executor.NewPool(ctx, executor.PoolOptions{Workers: 2, Worker: plugin.Spec{Path: "/nonexistent/loopkernel-plugin-x"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "starting 2 workers")
}

// --executor process makes the pool the loop's function executor, and
// kernel.CallFunc runs on it like on any executor.
func TestPoolThroughPolicyAndKernel(t *testing.T) {
	for _, v := range []string{policy.EnvVar, policy.SelectorEnv, policy.ResolverEnv, policy.ExecutorEnv} {
		t.Setenv(v, "")
	}
	pol, err := policy.Choose(policy.Flags{Executor: executor.ProcessName})
	require.NoError(t, err)
	l, err := pol.NewEventLoop()
	require.NoError(t, err)
	defer l.Close()
	require.IsType(t, &executor.Pool{}, l.FuncExecutor())
	w, err := testkit.Run(t, l, func(co *kernel.Co) (int, error) {
		f, err := kernel.CallFunc(l, pid, 0)
		if err != nil {
			return 0, err
		}
		return f.Await(co)
	})
	require.NoError(t, err)
	assert.NotEqual(t, os.Getpid(), w)
}

// A worker that died while idle is replaced when a call finds it dead, and
// the call, which never reached it, goes to the new worker.
func TestPoolWorkerDeadWhileIdleIsReplaced(t *testing.T) {
	p := newPool(t, executor.PoolOptions{Workers: 1})
	ctx := context.Background()
	w, err := pid.Call(ctx, p, 0)
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(w, syscall.SIGKILL))
	require.Eventually(t, func() bool { return syscall.Kill(w, 0) != nil }, 10*time.Second, 5*time.Millisecond)
	time.Sleep(50 * time.Millisecond) // the supervisor notices the death
	w2, err := pid.Call(ctx, p, 0)
	require.NoError(t, err, "a call that never reached the dead worker runs on its replacement")
	assert.NotEqual(t, w, w2)
}

var exit = sdk.NewFunc("executor-test.exit", func(_ context.Context, code int) (int, error) {
	os.Exit(code)
	return 0, nil
})

// When every worker slot keeps failing to start a replacement, the pool is
// broken and says so, instead of making calls wait for ever. The worker
// here is this test binary behind a wrapper that is removed once the pool
// has started, so no replacement can start.
func TestPoolThatCannotReplaceItsWorkersBreaks(t *testing.T) {
	self, err := os.Executable()
	require.NoError(t, err)
	script := filepath.Join(t.TempDir(), "worker")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\nLOOPKERNEL_BUNDLED_PLUGIN=goroutine exec "+self+" \"$@\"\n"), 0o700))
	p := newPool(t, executor.PoolOptions{Workers: 1, Worker: plugin.Spec{Name: sdk.DefaultExecutor, Path: script}})
	ctx := context.Background()
	got, err := double.Call(ctx, p, 4)
	require.NoError(t, err)
	assert.Equal(t, 8, got)
	require.NoError(t, os.Remove(script))

	_, err = exit.Call(ctx, p, 5)
	require.ErrorIs(t, err, sdk.ErrBackendDied)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = double.Call(cctx, p, 1)
	require.ErrorIs(t, err, sdk.ErrPluginFailed, "a pool whose every slot failed to restart fails calls with the reason")
	assert.Contains(t, err.Error(), "failed to start")
}

// A call cancelled while it runs, whose function honours its context, gives
// its worker back: the function's error (the context's) settles the call as
// well as a result would.
func TestPoolCancelledCallKeepsItsWorker(t *testing.T) {
	p := newPool(t, executor.PoolOptions{Workers: 1, Grace: 20 * time.Second})
	w0, err := pid.Call(context.Background(), p, 0)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	_, err = block.Call(ctx, p, 0)
	require.ErrorIs(t, err, context.Canceled)
	w1, err := pid.Call(context.Background(), p, 0)
	require.NoError(t, err)
	assert.Equal(t, w0, w1, "the worker was not replaced")
}
