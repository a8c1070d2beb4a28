package plugin

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestSweepStale: a sweep removes the socket directories a killed host and
// plugin left behind (an empty one, one whose socket nobody listens on),
// and nothing else: not a fresh one (a start in progress), not one a live
// process listens in, not one holding anything but a plugin socket, not
// one with another name.
func TestSweepStale(t *testing.T) {
	tmp := t.TempDir()
	old := time.Now().Add(-2 * staleAge)
	mk := func(name string, perm os.FileMode, aged bool, fill func(dir string)) string {
		dir := filepath.Join(tmp, name)
		require.NoError(t, os.Mkdir(dir, perm))
		require.NoError(t, os.Chmod(dir, perm))
		if fill != nil {
			fill(dir)
		}
		if aged {
			require.NoError(t, os.Chtimes(dir, old, old))
		}
		return dir
	}
	deadSocket := func(dir string) {
		ln, err := net.Listen("unix", filepath.Join(dir, "plugin4242"))
		require.NoError(t, err)
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		require.NoError(t, ln.Close())
	}
	var live net.Listener
	t.Cleanup(func() {
		if live != nil {
			live.Close()
		}
	})

	empty := mk("plugin-dir111", 0o700, true, nil)
	dead := mk("plugin-dir222", 0o700, true, deadSocket)
	fresh := mk("plugin-dir333", 0o700, false, nil)
	inUse := mk("plugin-dir444", 0o700, true, func(dir string) {
		var err error
		live, err = net.Listen("unix", filepath.Join(dir, "plugin77"))
		require.NoError(t, err)
	})
	foreign := mk("plugin-dir555", 0o700, true, func(dir string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600))
	})
	open := mk("plugin-dir666", 0o755, true, nil)
	other := mk("plugin-dirx", 0o700, true, nil)
	named := mk("my-plugin-dir777", 0o700, true, nil)

	removed := sweepStale(tmp, time.Now().Add(-staleAge))
	assert.ElementsMatch(t, []string{empty, dead}, removed)
	for _, d := range []string{empty, dead} {
		_, err := os.Lstat(d)
		assert.ErrorIs(t, err, os.ErrNotExist, d)
	}
	for _, d := range []string{fresh, inUse, foreign, open, other, named} {
		_, err := os.Lstat(d)
		assert.NoError(t, err, "%s kept", d)
	}
}

// TestFailedStartLeavesNothing: a start that fails after go-plugin made
// the socket directory removes it, whether the failure comes before the
// process is started (no descriptors for its output pipes: go-plugin's own
// Kill then removes nothing) or after (a plugin that exits before its
// handshake).
func TestFailedStartLeavesNothing(t *testing.T) {
	t.Run("runner", func(t *testing.T) {
		tmp := t.TempDir()
		t.Setenv("TMPDIR", tmp)
		makeRunner = func(string, *exec.Cmd, *os.File, *startTrace, hclog.Logger) (*procRunner, error) {
			return nil, fmt.Errorf("pipe2: %w", unix.EMFILE)
		}
		t.Cleanup(func() { makeRunner = newProcRunner })
		_, err := launchSelector(t.Context(), Spec{Name: "testpoll", MaxRestarts: -1})
		require.ErrorIs(t, err, unix.EMFILE)
		left, _ := os.ReadDir(tmp)
		assert.Empty(t, left, "nothing left in TMPDIR after a failed start")
	})
	t.Run("exec", func(t *testing.T) {
		tmp := t.TempDir()
		t.Setenv("TMPDIR", tmp)
		// /bin/true is no plugin: it exits at once, before any handshake.
		_, err := launchSelector(t.Context(), Spec{Path: "/bin/true", MaxRestarts: -1, StartTimeout: 5 * time.Second})
		require.Error(t, err)
		left, _ := os.ReadDir(tmp)
		assert.Empty(t, left, "nothing left in TMPDIR after a failed start")
	})
}

// A start that fails for want of descriptors is tried again with the
// reserve released, and the reserve is refilled afterwards.
func TestStartRetriesWithTheReserve(t *testing.T) {
	holdReserve()
	calls, freed := 0, 0
	v, err := withReserve(func() (int, error) {
		calls++
		if calls == 1 {
			return 0, fmt.Errorf("pipe2: %w", unix.EMFILE)
		}
		freed = reserveFDs - len(reserve.fds)
		return 42, nil
	})
	require.NoError(t, err)
	assert.Equal(t, 42, v)
	assert.Equal(t, 2, calls)
	assert.Equal(t, reserveFDs, freed, "the retry ran with the whole reserve free")
	reserve.mu.Lock()
	assert.Len(t, reserve.fds, reserveFDs, "refilled")
	reserve.mu.Unlock()
	_, err = withReserve(func() (int, error) { return 0, errors.New("other") })
	assert.EqualError(t, err, "other")
}
