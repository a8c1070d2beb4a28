package completion_test

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/driver/completion"
	"github.com/loopkernel/loopkernel/sdk"
)

func newDriver(t *testing.T) sdk.Driver {
	t.Helper()
	d, err := newUring(t)()
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func socketpair(t *testing.T) (int, int) {
	t.Helper()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

// step polls once and runs what Poll returned, as the kernel's batch does.
func step(t *testing.T, d sdk.Driver, timeout time.Duration) int {
	t.Helper()
	var ready [64]func()
	n, err := d.Poll(ready[:], timeout)
	require.NoError(t, err)
	for _, cb := range ready[:n] {
		cb()
	}
	return n
}

func until(t *testing.T, d sdk.Driver, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // generous: -race on a loaded machine
	for !cond() {
		require.True(t, time.Now().Before(deadline), "condition not reached")
		step(t, d, 50*time.Millisecond)
	}
}

// Bytes written with Write arrive through ReadStart's alloc buffers, in
// order; no callback runs inside the call that submitted it; end of stream
// is io.EOF.
func TestWriteReadEOF(t *testing.T) {
	d := newDriver(t)
	a, b := socketpair(t)
	fa, err := d.Open(a)
	require.NoError(t, err)
	fb, err := d.Open(b)
	require.NoError(t, err)
	_, err = d.Open(a)
	require.ErrorIs(t, err, sdk.ErrExists)

	var got []byte
	eof := false
	buf := make([]byte, 5) // smaller than what arrives: the rest waits its turn
	require.NoError(t, fb.ReadStart(func(int) []byte { return buf }, func(data []byte, err error) {
		if err == io.EOF {
			eof = true
			return
		}
		require.NoError(t, err)
		got = append(got, data...)
	}))
	require.ErrorIs(t, fb.ReadStart(nil, nil), sdk.ErrBusy)
	wrote := -1
	require.NoError(t, fa.Write([][]byte{[]byte("hello, "), []byte("completion")}, func(n int, err error) {
		require.NoError(t, err)
		wrote = n
	}))
	require.Equal(t, -1, wrote, "no callback inside the submitting call")
	require.ErrorIs(t, fa.Write(nil, func(int, error) {}), sdk.ErrBusy)
	until(t, d, func() bool { return wrote == 17 && len(got) == 17 })
	require.Equal(t, "hello, completion", string(got))
	require.NoError(t, unix.Shutdown(a, unix.SHUT_WR))
	until(t, d, func() bool { return eof })
}

// Stopping a read and starting it again loses and reorders nothing, even
// though the multishot read stays armed in between.
func TestReadStopStartKeepsOrder(t *testing.T) {
	d := newDriver(t)
	a, b := socketpair(t)
	fb, err := d.Open(b)
	require.NoError(t, err)
	var got []byte
	buf := make([]byte, 64<<10)
	var start func() error
	start = func() error {
		return fb.ReadStart(func(int) []byte { return buf }, func(data []byte, err error) {
			require.NoError(t, err)
			got = append(got, data...)
			fb.ReadStop() // a pause after every chunk
		})
	}
	want := make([]byte, 0, 1<<20)
	for i := range 1 << 20 {
		want = append(want, byte(i*7))
	}
	go func() {
		for off := 0; off < len(want); {
			n, err := unix.Write(a, want[off:min(off+4096, len(want))])
			if err == unix.EAGAIN {
				time.Sleep(time.Millisecond)
				continue
			}
			if err != nil {
				return
			}
			off += n
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		require.NoError(t, start())
		step(t, d, 50*time.Millisecond)
		if n, err := fb.TryRead(buf); err == nil {
			got = append(got, buf[:n]...)
		} else {
			require.True(t, errors.Is(err, sdk.ErrWouldBlock), "%v", err)
		}
	}
	require.Equal(t, want, got)
}

// Closing a descriptor with a write in flight: the write completes once,
// later, with ErrCanceled (its buffer the driver's until then), and the
// slot is not reused before.
func TestCloseCancelsWriteOnce(t *testing.T) {
	d := newDriver(t)
	a, _ := socketpair(t)
	require.NoError(t, unix.SetsockoptInt(a, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096))
	fa, err := d.Open(a)
	require.NoError(t, err)
	big := make([]byte, 8<<20) // more than the socket takes: the write waits
	calls, sent := 0, 0
	var last error
	for i := 0; i < 50 && last == nil; i++ {
		done := false
		require.NoError(t, fa.Write([][]byte{big}, func(n int, err error) { sent += n; last = err; done = true }))
		until(t, d, func() bool { return done })
		if sent > 0 && last == nil {
			// the first write fills the socket; the next one waits
			pending := fa.Write([][]byte{big}, func(n int, err error) { calls++; last = err })
			require.NoError(t, pending)
			step(t, d, 10*time.Millisecond)
			break
		}
	}
	require.NoError(t, fa.Close())
	require.Zero(t, calls, "cancelled operations call back later, not inside Close")
	until(t, d, func() bool { return calls > 0 })
	step(t, d, 20*time.Millisecond)
	require.Equal(t, 1, calls)
	require.ErrorIs(t, last, sdk.ErrCanceled)
	require.ErrorIs(t, last, unix.ECANCELED)
}

// Watch is level-triggered through POLL_ADD: the callback runs on every
// Poll while the byte stays unread, and stops after Unwatch.
func TestWatchLevelTriggered(t *testing.T) {
	d := newDriver(t)
	a, b := socketpair(t)
	fb, err := d.Open(b)
	require.NoError(t, err)
	calls := 0
	require.NoError(t, fb.Watch(sdk.Read, func() { calls++ }))
	_, err = unix.Write(a, []byte("x"))
	require.NoError(t, err)
	until(t, d, func() bool { return calls >= 3 })
	fb.Unwatch(sdk.Read)
	n := calls
	step(t, d, 20*time.Millisecond)
	step(t, d, 20*time.Millisecond)
	require.Equal(t, n, calls, "no callback after Unwatch")
}

// Wake from another goroutine ends a Poll that would wait forever.
func TestWake(t *testing.T) {
	d := newDriver(t)
	go func() { time.Sleep(20 * time.Millisecond); d.Wake() }()
	var ready [4]func()
	_, err := d.Poll(ready[:], -1)
	require.NoError(t, err)
}

// Accept hands over every connection with its descriptor (non-blocking,
// the caller's) from one multishot submission.
func TestAcceptMultishot(t *testing.T) {
	d := newDriver(t)
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(ln)
	require.NoError(t, unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, unix.Listen(ln, 16))
	sa, err := unix.Getsockname(ln)
	require.NoError(t, err)
	fl, err := d.Open(ln)
	require.NoError(t, err)
	var fds []int
	require.NoError(t, fl.Accept(16, func(fd int, peer *sdk.SockAddr, err error) {
		require.NoError(t, err)
		require.NotZero(t, peer.Len)
		fds = append(fds, fd)
	}))
	for range 3 {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		defer unix.Close(c)
		require.NoError(t, unix.Connect(c, sa))
	}
	until(t, d, func() bool { return len(fds) == 3 })
	for _, fd := range fds {
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		require.NoError(t, err)
		require.NotZero(t, fl&unix.O_NONBLOCK)
		unix.Close(fd)
	}
	require.True(t, d.Capabilities().Has(sdk.CapMultishot))
	require.Equal(t, "proactor", d.Capabilities().Family)
}

var _ = completion.New
