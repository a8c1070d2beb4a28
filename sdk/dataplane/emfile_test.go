package dataplane

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// TestPluginOutOfDescriptors: when the plugin has no descriptor left to
// receive a registration in (recvmsg drops it and sets MSG_CTRUNC), the
// registrations that came without one fail with EMFILE, each reported as
// one Error event, and the plane goes on: the ones it did receive deliver
// readiness, and it is no protocol violation. (Host and plugin share this
// test process, so the limit is lowered for both, briefly.)
func TestPluginOutOfDescriptors(t *testing.T) {
	c, _ := newClient(t, nil)
	const n = 6
	var ends [n][2]int
	for i := range ends {
		ends[i][0], ends[i][1] = pair(t)
		_, err := unix.Write(ends[i][1], []byte("x"))
		require.NoError(t, err)
		require.NoError(t, c.Register(ends[i][0], sdk.Token(i+1), sdk.Read))
	}

	var lim unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &lim))
	open, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	low := lim
	low.Cur = uint64(len(open) - 1 + 3) // room for three of the six copies
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &low))
	evs := make([]sdk.Event, 2*n)
	got, err := c.Wait(evs, 0)
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &lim))
	require.NoError(t, err, "no protocol violation")

	read, failed := 0, 0
	for _, e := range evs[:got] {
		switch e.Events {
		case sdk.Read:
			read++
		case sdk.Error:
			failed++
		}
	}
	// Some three of each (the process's other descriptors may move by one
	// or two meanwhile).
	assert.Positive(t, failed, "the registrations without a descriptor failed")
	assert.Positive(t, read, "the ones received are watched")
	assert.Equal(t, n, read+failed)

	// The plane carries on, and a failed registration can be made again
	// (the last one came without a descriptor: the kernel keeps the first).
	require.NoError(t, c.Unregister(sdk.Token(n)))
	require.NoError(t, c.Register(ends[n-1][0], sdk.Token(n), sdk.Read))
	got, err = c.Wait(evs, 0)
	require.NoError(t, err)
	assert.Equal(t, read+1, got, "the old registrations and the new one are ready")
}
