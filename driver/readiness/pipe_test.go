package readiness_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestWriteToPipe: TryWrite and Write work on a descriptor that is not a
// socket (send(2) says ENOTSOCK there; the driver switches to write(2) and
// writev(2)), and a pipe without a reader fails with EPIPE instead of
// killing the process with SIGPIPE.
func TestWriteToPipe(t *testing.T) {
	d, _ := newDriver(t)
	var p [2]int
	require.NoError(t, unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC))
	defer unix.Close(p[1])
	f, err := d.Open(p[1])
	require.NoError(t, err)
	defer f.Close()

	n, err := f.TryWrite([][]byte{[]byte("one"), []byte("two")})
	require.NoError(t, err)
	require.Equal(t, 6, n, "TryWrite writes a pipe with writev")
	n, err = f.TryWrite([][]byte{[]byte("three")})
	require.NoError(t, err)
	require.Equal(t, 5, n)

	var done bool
	var wrote int
	require.NoError(t, f.Write([][]byte{[]byte("four")}, func(n int, err error) {
		require.NoError(t, err)
		wrote, done = n, true
	}))
	ready := make([]func(), 16)
	deadline := time.Now().Add(5 * time.Second)
	for !done && time.Now().Before(deadline) {
		k, err := d.Poll(ready, 100*time.Millisecond)
		require.NoError(t, err)
		for _, fn := range ready[:k] {
			fn()
		}
	}
	require.True(t, done, "the Write completes")
	require.Equal(t, 4, wrote)
	buf := make([]byte, 64)
	k, err := unix.Read(p[0], buf)
	if err != nil {
		unix.Close(p[0])
	}
	require.NoError(t, err)
	require.Equal(t, "onetwothreefour", string(buf[:k]))

	unix.Close(p[0]) // the reader goes away
	_, err = f.TryWrite([][]byte{[]byte("void")})
	require.True(t, errors.Is(err, unix.EPIPE), "a pipe without a reader: EPIPE, got %v", err)
}
