package plugin

import (
	"bytes"
	"context"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/sdk"
)

// syncBuffer is a log sink the plugin's forwarded lines and the host's
// may write to from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A selector plugin that dies on every wait, with Spec.Fallback: once the
// restart budget is spent, the in-process twin takes every registration
// over, readiness arrives again, a warning says why, Wake works on the
// twin, and neither a process nor a socket directory is left.
func TestCrashLoopFallsBackToTheTwin(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	var logs syncBuffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})
	sel := launch(t, Spec{Name: "crashloop", RestartBudget: 300 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Fallback: "testpoll", Logger: logger})
	r, w := pipe(t)
	require.NoError(t, sel.Register(r, 7, sdk.Read))
	_, err := unix.Write(w, []byte("x"))
	require.NoError(t, err)
	start := time.Now()
	assert.Equal(t, sdk.Read, waitFor(t, sel, 7), "the registration made before the fall-back delivers readiness")
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "fell back only once the budget was spent")

	st, err := sel.Stats(context.Background())
	require.NoError(t, err)
	assert.True(t, st.FellBack)
	assert.Zero(t, st.Pid)
	assert.Positive(t, st.Restarts)
	assert.Equal(t, "testpoll", sel.Capabilities().Name)
	assert.Contains(t, logs.String(), "falling back to the in-process back-end")
	assert.Contains(t, logs.String(), "could not be kept alive")

	// The twin serves registrations made from now on, and wakes.
	r2, w2 := pipe(t)
	require.NoError(t, sel.Register(r2, 8, sdk.Read))
	_, err = unix.Write(w2, []byte("y"))
	require.NoError(t, err)
	assert.Equal(t, sdk.Read, waitFor(t, sel, 8))
	require.NoError(t, sel.Unregister(7))
	go func() { time.Sleep(20 * time.Millisecond); _ = sel.Wake() }()
	require.NoError(t, sel.Unregister(8))
	n, err := sel.Wait(make([]sdk.Event, 4), 10*time.Second)
	require.NoError(t, err)
	assert.Zero(t, n)

	require.NoError(t, sel.Close())
	assert.Empty(t, testkit.LiveChildren(os.Getpid()), "no plugin process left")
	left, _ := os.ReadDir(tmp)
	assert.Empty(t, left, "no socket directory left")
}

// Without Spec.Fallback the same plugin fails, and says why.
func TestFallbackMustExist(t *testing.T) {
	_, err := launchSelector(t.Context(), Spec{Name: "testpoll", Fallback: "nosuch"})
	require.ErrorContains(t, err, `no in-process selector "nosuch" to fall back to`)
}

// An executor whose worker cannot be kept alive (here: no restarts at
// all) falls back to its in-process twin: calls run in this process.
func TestExecutorFallsBackToTheTwin(t *testing.T) {
	ex := launchCalls(t, sdk.Executors, Spec{Name: "funcs", MaxRestarts: -1, Fallback: "funcs"}).(*RemoteExecutor)
	st := statsOf(t, ex)
	require.NoError(t, syscall.Kill(st.Pid, syscall.SIGKILL))
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := ex.Stats(context.Background()); err == nil && st.FellBack {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	worker, err := pid.Call(context.Background(), ex, struct{}{})
	require.NoError(t, err)
	assert.Equal(t, os.Getpid(), worker, "ran in process")
	got, err := upper.Call(context.Background(), ex, "abc")
	require.NoError(t, err)
	assert.Equal(t, "ABC", got)
}

// A third-party plugin (one run from a Path) is named by the back-end it
// serves, not by the selector it wraps, so that the kernel's message when
// it is given up on ("selector NAME failed: ...") names the plugin. Here a
// bundled plugin whose selector calls itself "epoll" stands in for one.
func TestThirdPartyPluginNamedByWhatItServes(t *testing.T) {
	sel := launch(t, Spec{Name: "testpoll", Config: map[string]string{"name": "epoll"}})
	assert.Equal(t, "epoll", sel.Capabilities().Name, "bundled: the selector's own name")
	sel.spec.Path = "/opt/plugins/loopkernel-plugin-testpoll" // as Resolve makes it for plugin:PATH
	assert.Equal(t, "testpoll", sel.Capabilities().Name, "third party: the name it serves")
}
