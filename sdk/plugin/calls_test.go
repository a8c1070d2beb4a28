package plugin

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/sdk"
	pb "github.com/loopkernel/loopkernel/sdk/proto"
)

// launchCalls starts the bundled test back-end of a call family (table or
// funcs, registered in TestMain) in a plugin process, closed at cleanup.
func launchCalls[T any](t *testing.T, reg *sdk.Registry[T], spec Spec) T {
	t.Helper()
	if spec.Logger == nil {
		spec.Logger = testLogger(t)
	}
	b, err := Launch(context.Background(), reg, spec)
	require.NoError(t, err)
	t.Cleanup(func() { _ = any(b).(interface{ Close() error }).Close() })
	return b
}

// statsOf is what the control plane says about a remote back-end.
func statsOf(t *testing.T, b any) Stats {
	t.Helper()
	st, err := b.(interface {
		Stats(context.Context) (Stats, error)
	}).Stats(context.Background())
	require.NoError(t, err)
	return st
}

// waitInFlight waits until the plugin is running n calls.
func waitInFlight(t *testing.T, b any, n int64) Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// A Stats error is a plugin being replaced: ask again.
		st, err := b.(interface {
			Stats(context.Context) (Stats, error)
		}).Stats(context.Background())
		if err == nil && st.InFlight == n {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin has %d calls in flight, want %d (%v)", st.InFlight, n, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRemoteResolver(t *testing.T) {
	r := launchCalls(t, sdk.Resolvers, Spec{Name: "table"})
	ctx := context.Background()
	ais, err := r.Getaddrinfo(ctx, "db.test", "5432", sdk.AddrinfoHints{})
	require.NoError(t, err)
	want, _ := tableResolver{}.Getaddrinfo(ctx, "db.test", "", sdk.AddrinfoHints{})
	assert.Equal(t, want, ais)

	_, err = r.Getaddrinfo(ctx, "nx.test", "", sdk.AddrinfoHints{})
	var dnse *net.DNSError
	require.ErrorAs(t, err, &dnse, "a DNS error crosses intact: %v", err)
	assert.True(t, dnse.IsNotFound)
	assert.Equal(t, "nx.test", dnse.Name)

	ni, err := r.Getnameinfo(ctx, netip.MustParseAddrPort("127.0.0.1:5432"), 0)
	require.NoError(t, err)
	assert.Equal(t, sdk.NameInfo{Host: "db.test", Service: "5432"}, ni)
	assert.EqualValues(t, 3, statsOf(t, r).Calls)

	// Configuration and pinning are the supervisor's, the same for every
	// family.
	_, err = Launch(ctx, sdk.Resolvers, Spec{Name: "table", Config: map[string]string{"ndots": "2"}})
	assert.ErrorContains(t, err, `has no setting "ndots"`)
	_, err = Launch(ctx, sdk.Resolvers, Spec{Name: "table", SHA256: strings.Repeat("00", 32)})
	assert.ErrorIs(t, err, ErrChecksum)
	_, err = Launch(ctx, sdk.Resolvers, Spec{Name: "nosuch"})
	assert.ErrorContains(t, err, `no bundled resolver "nosuch"`)
}

func TestRemoteExecutor(t *testing.T) {
	ex := launchCalls(t, sdk.Executors, Spec{Name: "funcs"})
	ctx := context.Background()
	got, err := upper.Call(ctx, ex, "shout")
	require.NoError(t, err)
	assert.Equal(t, "SHOUT", got)
	worker, err := pid.Call(ctx, ex, struct{}{})
	require.NoError(t, err)
	assert.NotEqual(t, os.Getpid(), worker, "the function ran in the worker")

	// A function's error crosses as a *sdk.CallError with its text.
	_, err = fail.Call(ctx, ex, "out of cheese")
	var ce *sdk.CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "plugintest.fail", ce.Func)
	assert.Equal(t, "out of cheese", ce.Message)

	_, err = ex.Call(ctx, "plugintest.nosuch", nil)
	assert.ErrorIs(t, err, sdk.ErrUnknownFunc)

	caps, err := ex.(*RemoteExecutor).proc.control.Capabilities(ctx, &pb.CapabilitiesRequest{})
	require.NoError(t, err)
	assert.Equal(t, "executor", caps.Family)
	assert.Contains(t, caps.Functions, "plugintest.block", "the worker lists the functions it knows")
}

// SIGKILL with calls in flight: they fail with an error that says the
// worker died and how; the next call goes to a new worker.
func TestExecutorSIGKILLFailsCallsInFlight(t *testing.T) {
	ex := launchCalls(t, sdk.Executors, Spec{Name: "funcs"})
	ctx := context.Background()
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := block.Call(ctx, ex, struct{}{})
			errs <- err
		}()
	}
	before := waitInFlight(t, ex, 3)
	require.NoError(t, syscall.Kill(before.Pid, syscall.SIGKILL))
	for range 3 {
		select {
		case err := <-errs:
			require.ErrorIs(t, err, sdk.ErrBackendDied)
			assert.ErrorContains(t, err, "worker (pid ")
			assert.ErrorContains(t, err, "died during the call (signal: killed)")
		case <-time.After(10 * time.Second):
			t.Fatal("a call in flight did not fail when its worker died")
		}
	}
	got, err := upper.Call(ctx, ex, "again")
	require.NoError(t, err, "a new call goes to the restarted worker")
	assert.Equal(t, "AGAIN", got)
	after := statsOf(t, ex)
	assert.NotEqual(t, before.Pid, after.Pid)
	assert.Equal(t, 1, after.Restarts)
	assert.False(t, alive(before.Pid), "the killed worker was reaped")
}

func TestResolverSIGKILLFailsLookupsInFlight(t *testing.T) {
	r := launchCalls(t, sdk.Resolvers, Spec{Name: "table"})
	ctx := context.Background()
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := r.Getaddrinfo(ctx, "slow.test", "", sdk.AddrinfoHints{})
			errs <- err
		}()
	}
	before := waitInFlight(t, r, 2)
	require.NoError(t, syscall.Kill(before.Pid, syscall.SIGKILL))
	for range 2 {
		err := <-errs
		require.ErrorIs(t, err, sdk.ErrBackendDied)
		assert.ErrorContains(t, err, `resolver plugin "table": worker (pid `)
		assert.ErrorContains(t, err, `getaddrinfo "slow.test"`)
	}
	ais, err := r.Getaddrinfo(ctx, "db.test", "", sdk.AddrinfoHints{})
	require.NoError(t, err)
	assert.Len(t, ais, 2)
	assert.Equal(t, 1, statsOf(t, r).Restarts)
}

// A caller that gives up tells the worker, whose function sees its context
// cancelled and returns; the plane carries on.
func TestCancelledCallStopsInTheWorker(t *testing.T) {
	ex := launchCalls(t, sdk.Executors, Spec{Name: "funcs"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := block.Call(ctx, ex, struct{}{})
		done <- err
	}()
	waitInFlight(t, ex, 1)
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
	waitInFlight(t, ex, 0)
	got, err := upper.Call(context.Background(), ex, "still here")
	require.NoError(t, err)
	assert.Equal(t, "STILL HERE", got)
}

// A worker that stops answering (here: stopped by SIGSTOP) fails its ping
// and is replaced; the calls it held fail as died.
func TestHungWorkerIsReplaced(t *testing.T) {
	// Tight enough to be quick, loose enough that a loaded machine does not
	// make a healthy worker look hung.
	ex := launchCalls(t, sdk.Executors, Spec{Name: "funcs", ReplyTimeout: 500 * time.Millisecond})
	done := make(chan error, 1)
	go func() {
		_, err := block.Call(context.Background(), ex, struct{}{})
		done <- err
	}()
	before := waitInFlight(t, ex, 1)
	require.NoError(t, syscall.Kill(before.Pid, syscall.SIGSTOP))
	start := time.Now()
	select {
	case err := <-done:
		require.ErrorIs(t, err, sdk.ErrBackendDied)
		assert.ErrorContains(t, err, "signal: killed")
		assert.Less(t, time.Since(start), 3*time.Second, "noticed within a ping interval and the reply timeout")
	case <-time.After(10 * time.Second):
		t.Fatal("a hung worker was not replaced")
	}
	worker, err := pid.Call(context.Background(), ex, struct{}{})
	require.NoError(t, err)
	assert.NotEqual(t, before.Pid, worker)
}

// A worker that stops reading while a large call is being sent to it: the
// health check still fires (its ping must not wait behind that send), the
// worker is replaced, and the call, never delivered whole, goes to the new
// worker.
func TestHungWorkerBehindALargeCall(t *testing.T) {
	ex := launchCalls(t, sdk.Executors, Spec{Name: "funcs", ReplyTimeout: 500 * time.Millisecond})
	before := statsOf(t, ex)
	require.NoError(t, syscall.Kill(before.Pid, syscall.SIGSTOP))
	arg := append(append([]byte(`{"pad":"`), bytes.Repeat([]byte("x"), 20<<20)...), `"}`...)
	start := time.Now()
	res, err := ex.Call(context.Background(), "plugintest.pid", arg)
	require.NoError(t, err)
	got, err := pid.Decode(res)
	require.NoError(t, err)
	assert.NotEqual(t, before.Pid, got, "ran on the replacement")
	// A hang guard, not a timing target: a restart plus a 20 MiB call
	// under -race took 5 to 12s on the loaded 2-core machine.
	assert.Less(t, time.Since(start), 30*time.Second)
}

// When the supervisor gives up, calls fail with its error, which wraps
// sdk.ErrPluginFailed and names the family.
func TestCallPluginGivesUp(t *testing.T) {
	ex := launchCalls(t, sdk.Executors, Spec{Name: "funcs", MaxRestarts: -1})
	st := statsOf(t, ex)
	require.NoError(t, syscall.Kill(st.Pid, syscall.SIGKILL))
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err = upper.Call(context.Background(), ex, "x"); errors.Is(err, sdk.ErrPluginFailed) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	require.ErrorIs(t, err, sdk.ErrPluginFailed)
	assert.ErrorContains(t, err, `executor plugin "funcs"`)
	assert.ErrorContains(t, err, "0 restarts in all")
	assert.ErrorContains(t, err, "signal: killed")
}

func TestCloseFailsCallsInFlight(t *testing.T) {
	b, err := Launch(context.Background(), sdk.Executors, Spec{Name: "funcs", Logger: testLogger(t)})
	require.NoError(t, err)
	ex := b.(*RemoteExecutor)
	done := make(chan error, 1)
	go func() {
		_, err := block.Call(context.Background(), ex, struct{}{})
		done <- err
	}()
	st := waitInFlight(t, ex, 1)
	require.NoError(t, ex.Close())
	assert.ErrorIs(t, <-done, sdk.ErrExecutorClosed)
	_, err = upper.Call(context.Background(), ex, "x")
	assert.ErrorIs(t, err, sdk.ErrExecutorClosed)
	assert.ErrorIs(t, ex.Close(), sdk.ErrExecutorClosed)
	assert.False(t, alive(st.Pid))
}

// The standby is the supervisor's, so a call family has it too: a worker
// killed with Spec.Standby is replaced by the process already started.
func TestExecutorRestartAdoptsStandby(t *testing.T) {
	ex := launchCalls(t, sdk.Executors, Spec{Name: "funcs", Standby: true}).(*RemoteExecutor)
	spare := standbyReady(t, ex.supervisor)
	first := statsOf(t, ex)
	require.NoError(t, syscall.Kill(first.Pid, syscall.SIGKILL))
	var worker int
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if worker, err = pid.Call(context.Background(), ex, struct{}{}); err == nil {
			break
		}
	}
	require.NoError(t, err)
	assert.Equal(t, spare.pid, worker, "the standby became the worker")
	assert.NotEqual(t, spare.pid, standbyReady(t, ex.supervisor).pid, "and a new standby was started")
}
