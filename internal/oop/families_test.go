package oop_test

import (
	"context"
	"net/netip"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
