package oop_test

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/kernel"
	_ "github.com/loopkernel/loopkernel/plugins/executor"
	_ "github.com/loopkernel/loopkernel/plugins/resolver"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// workerPid reports the pid of the process that runs it: registered in
// every process of this test binary, host and workers alike.
var workerPid = sdk.NewFunc("oop.pid", func(context.Context, struct{}) (int, error) { return os.Getpid(), nil })

// The bundled resolver and executor back-ends, the same code the policies
// use in process, served out of process through the generic supervisor by
// the spec strings a policy takes.
func TestBundledCallFamiliesOutOfProcess(t *testing.T) {
	ctx := context.Background()
	opts := plugin.Options{Template: plugin.Spec{Logger: testLogger(t)}}

	r, err := plugin.Open(ctx, sdk.Resolvers, "plugin:"+sdk.DefaultResolver, opts)
	require.NoError(t, err)
	defer r.(*plugin.RemoteResolver).Close()
	ais, err := r.Getaddrinfo(ctx, "127.0.0.1", "80", sdk.AddrinfoHints{})
	require.NoError(t, err)
	require.NotEmpty(t, ais)
	assert.Equal(t, netip.MustParseAddrPort("127.0.0.1:80"), ais[0].Addr)

	ex, err := plugin.Open(ctx, sdk.Executors, "plugin:"+sdk.DefaultExecutor, opts)
	require.NoError(t, err)
	defer ex.Close()
	pid, err := workerPid.Call(ctx, ex, struct{}{})
	require.NoError(t, err)
	assert.NotEqual(t, os.Getpid(), pid, "ran in the worker")
	st, err := ex.(*plugin.RemoteExecutor).Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, pid, st.Pid)
	assert.EqualValues(t, 1, st.Calls)
}

// blockFunc runs until its call is cancelled.
var blockFunc = sdk.NewFunc("oop.block", func(ctx context.Context, _ struct{}) (struct{}, error) {
	<-ctx.Done()
	return struct{}{}, ctx.Err()
})

// A loop's CallFunc futures on an executor plugin whose worker is
// SIGKILLed mid-call: each fails with an error wrapping sdk.ErrBackendDied,
// and the loop's next call runs on the restarted worker.
func TestLoopCallFuncSurvivesWorkerSIGKILL(t *testing.T) {
	ctx := context.Background()
	ex, err := plugin.Open(ctx, sdk.Executors, "plugin:"+sdk.DefaultExecutor, plugin.Options{Template: plugin.Spec{Logger: testLogger(t)}})
	require.NoError(t, err)
	remote := ex.(*plugin.RemoteExecutor)
	sel, err := sdk.Selectors.New("epoll")
	require.NoError(t, err)
	l := kernel.New(sel, kernel.WithLogger(testLogger(t)), kernel.WithFuncExecutor(ex))
	defer l.Close()

	f1, err := kernel.CallFunc(l, blockFunc, struct{}{})
	require.NoError(t, err)
	f2, err := kernel.CallFunc(l, blockFunc, struct{}{})
	require.NoError(t, err)
	killed := make(chan int, 1)
	go func() {
		for {
			st, err := remote.Stats(ctx)
			if err == nil && st.InFlight == 2 {
				killed <- st.Pid
				_ = killErr(st.Pid)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	for _, f := range []*kernel.Future[struct{}]{f1, f2} {
		err := l.RunUntilComplete(f) // the future's error
		require.ErrorIs(t, err, sdk.ErrBackendDied)
		assert.Contains(t, err.Error(), "died during the call (signal: killed)")
		_, err = f.Result()
		assert.ErrorIs(t, err, sdk.ErrBackendDied)
	}
	old := <-killed

	f3, err := kernel.CallFunc(l, workerPid, struct{}{})
	require.NoError(t, err)
	require.NoError(t, l.RunUntilComplete(f3))
	pid, err := f3.Result()
	require.NoError(t, err)
	assert.NotEqual(t, old, pid, "the next call ran on a new worker")
}
