package plugin

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// standbyReady waits until sel's standby process has started and returns
// it.
func standbyReady(t testing.TB, sel *supervisor) *process {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		sel.spare.mu.Lock()
		p := sel.spare.ready
		sel.spare.mu.Unlock()
		if p != nil {
			return p
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no standby process within 10s")
	return nil
}

// A restart adopts the standby process, replays the registrations to it,
// and starts the next standby; Close stops both and leaves nothing in the
// temporary directory.
func TestRestartAdoptsStandby(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // go-plugin makes the socket directories here
	sel := launch(t, Spec{Name: "testpoll", Standby: true, Logger: hclog.NewNullLogger()})
	first := sel.proc
	spare := standbyReady(t, sel.supervisor)
	require.NotEqual(t, first.pid, spare.pid)

	var p [2]int
	require.NoError(t, unix.Pipe2(p[:], unix.O_CLOEXEC))
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	_, err := unix.Write(p[1], []byte("x"))
	require.NoError(t, err)
	require.NoError(t, sel.Register(p[0], sdk.MakeToken(1, 1), sdk.Read))

	require.NoError(t, syscall.Kill(first.pid, syscall.SIGKILL))
	evs := make([]sdk.Event, 4)
	for n := 0; n == 0; {
		n, err = sel.Wait(evs, time.Second)
		require.NoError(t, err)
	}
	assert.Equal(t, spare.pid, sel.proc.pid, "the restart adopted the standby")
	assert.Equal(t, sdk.MakeToken(1, 1), evs[0].Token, "registrations replayed to it")
	next := standbyReady(t, sel.supervisor)
	assert.NotEqual(t, spare.pid, next.pid, "a new standby is started")

	require.NoError(t, sel.Close())
	assert.False(t, alive(spare.pid))
	assert.False(t, alive(next.pid))
	left, _ := os.ReadDir(tmp)
	assert.Empty(t, left, "socket directories left behind")
}

// Close while the standby is still starting abandons that start at once.
func TestCloseAbandonsStandbyStart(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	sel := launch(t, Spec{Name: "testpoll", Standby: true, Logger: hclog.NewNullLogger()})
	t0 := time.Now()
	require.NoError(t, sel.Close())
	assert.Less(t, time.Since(t0), 5*time.Second, "not StartTimeout")
	left, _ := os.ReadDir(tmp)
	assert.Empty(t, left, "socket directories left behind")
}

// A plugin that dies on every wait spends its restarts on standbys all the
// same, gives up with the same error, and leaves no standby behind.
func TestStandbyCrashLoopGivesUp(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	sel := launch(t, Spec{Name: "crashloop", MaxRestarts: 3, MaxBackoff: 15 * time.Millisecond,
		Standby: true, Logger: hclog.NewNullLogger()})
	err := waitUntilError(t, sel, 20*time.Millisecond)
	assert.Equal(t, 3, sel.total, "three restarts, then the fourth failure was final")
	require.ErrorIs(t, err, sdk.ErrPluginFailed)
	assert.Contains(t, err.Error(), "exit status 3")
	sel.spare.mu.Lock()
	left := sel.spare.ready != nil || sel.spare.filling != nil
	sel.spare.mu.Unlock()
	assert.False(t, left, "a standby outlived the give-up")
	require.NoError(t, sel.Close())
	dirs, _ := os.ReadDir(tmp)
	assert.Empty(t, dirs, "socket directories left behind")
}
