package dataplane

import (
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// tap sits between a Client and its plugin and counts the frames that
// cross, so the tests can prove the batching (one request frame and one
// reply per Wait) from the outside, as a plugin would see it, without
// counters in Client itself. It forwards every frame unchanged, descriptors
// included.
type tap struct {
	requests atomic.Uint64 // REQUEST frames, host to plugin
	replies  atomic.Uint64 // EVENTS and ERROR frames, plugin to host
}

// tapped puts a tap on host (the host end of a data plane) and returns the
// end the Client should use instead.
func tapped(t testing.TB, host *os.File) (*os.File, *tap) {
	t.Helper()
	client, inner, err := Socketpair()
	require.NoError(t, err)
	tp := &tap{}
	var wg sync.WaitGroup
	wg.Go(func() { tp.forward(inner, host, &tp.requests, tRequest) })
	wg.Go(func() { tp.forward(host, inner, &tp.replies, tEvents, tError) })
	// Runs after the Client's cleanup (registered later) has closed client,
	// which ends both directions; closing here rather than by finalizer
	// keeps descriptor counts in later tests exact.
	t.Cleanup(func() {
		unix.Shutdown(int(inner.Fd()), unix.SHUT_RDWR)
		wg.Wait()
		inner.Close()
		host.Close()
	})
	return client, tp
}

// forward copies frames from src to dst until src ends, counting those of
// the given types, then shuts dst down so the far side sees the end too.
func (tp *tap) forward(src, dst *os.File, n *atomic.Uint64, types ...uint8) {
	buf := make([]byte, maxFrame+1)
	oob := make([]byte, oobSpace)
	for {
		k, oobn, _, _, err := unix.Recvmsg(int(src.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != nil || k == 0 {
			unix.Shutdown(int(dst.Fd()), unix.SHUT_RDWR)
			return
		}
		if k >= headerLen {
			for _, typ := range types {
				if buf[5] == typ {
					n.Add(1)
				}
			}
		}
		fds, _ := parseRights(oob[:oobn], nil)
		err = unix.Sendmsg(int(dst.Fd()), buf[:k], putRights(make([]byte, oobSpace), fds), nil, unix.MSG_NOSIGNAL)
		closeAll(fds)
		if err != nil {
			unix.Shutdown(int(src.Fd()), unix.SHUT_RDWR)
			return
		}
	}
}
