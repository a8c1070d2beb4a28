package completion_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/policy"
)

// The "uring" policy is listed and builds loops on the completion driver,
// whose descriptor watching (AddReader, AddWriter) goes through POLL_ADD
// and is level-triggered.
func TestUringPolicyWatches(t *testing.T) {
	newUring(t) // skips, naming why, where io_uring is refused
	require.True(t, slices.Contains(policy.Names(), "uring"))
	p, err := policy.Lookup("uring")
	require.NoError(t, err)
	sel, _, _ := p.Backends()
	require.Equal(t, "proactor:uring", sel)
	l, err := p.NewEventLoop()
	require.NoError(t, err)
	defer l.Close()

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	reads, writes := 0, 0
	require.NoError(t, l.AddWriter(fds[0], func() {
		writes++
		if writes == 2 { // level-triggered: writable again without a write
			l.RemoveWriter(fds[0])
			unix.Write(fds[0], []byte("x"))
		}
	}))
	require.NoError(t, l.AddReader(fds[1], func() {
		reads++
		if reads == 3 { // the byte stays unread: reported on every poll
			l.Stop()
		}
	}))
	timer := time.AfterFunc(10*time.Second, func() { l.CallSoonThreadsafe(l.Stop) })
	defer timer.Stop()
	require.NoError(t, l.RunForever())
	require.Equal(t, 3, reads)
	require.Equal(t, 2, writes)
}
