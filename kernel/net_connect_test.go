package kernel_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/sdk"
)

func TestConnectTriesEveryAddress(t *testing.T) { forEachBackend(t, caseConnectEveryAddress) }
func TestConnectHappyEyeballs(t *testing.T)     { forEachBackend(t, caseConnectHappyEyeballs) }
func TestConnectLocalAddr(t *testing.T)         { forEachBackend(t, caseConnectLocalAddr) }
func TestConnectCancelled(t *testing.T)         { forEachBackend(t, caseConnectCancelled) }
func TestConnectArgs(t *testing.T)              { forEachBackend(t, caseConnectArgs) }

// fakeResolver answers names from a table, and can hold a lookup until
// its context is cancelled.
type fakeResolver struct {
	answers   map[string][]netip.Addr
	hold      bool
	cancelled atomic.Bool
	calls     atomic.Int32
}

func (r *fakeResolver) Getaddrinfo(ctx context.Context, host, port string, hints sdk.AddrinfoHints) ([]sdk.Addrinfo, error) {
	r.calls.Add(1)
	if r.hold {
		<-ctx.Done()
		r.cancelled.Store(true)
		return nil, ctx.Err()
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, &net.DNSError{Err: "bad port", Name: port}
	}
	var out []sdk.Addrinfo
	for _, a := range r.answers[host] {
		fam := syscall.AF_INET6
		if a.Is4() {
			fam = syscall.AF_INET
		}
		out = append(out, sdk.Addrinfo{Family: fam, SockType: hints.SockType, Protocol: syscall.IPPROTO_TCP, Addr: netip.AddrPortFrom(a, uint16(p))})
	}
	if out == nil {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

func (r *fakeResolver) Getnameinfo(context.Context, netip.AddrPort, int) (sdk.NameInfo, error) {
	return sdk.NameInfo{}, errors.New("not supported by the fake")
}

// refusedPort returns a TCP port on loopback with nothing listening.
func refusedPort(t *testing.T) int {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// caseConnectEveryAddress: every resolved address is tried in order; when
// all fail the error carries each attempt, and a later address that works
// wins over earlier failures.
func caseConnectEveryAddress(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	lo := netip.MustParseAddr("127.0.0.1")
	lo2 := netip.MustParseAddr("127.0.0.2")
	res := &fakeResolver{answers: map[string][]netip.Addr{"two.test": {lo, lo2}}}
	l.SetResolver(res)
	port := strconv.Itoa(refusedPort(t))
	runCo(t, l, func(co *kernel.Co) error {
		_, _, err := kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "two.test", port, nil)
		var ce *kernel.ConnectError
		require.ErrorAs(t, err, &ce)
		require.Len(t, ce.Errs, 2, "%v", err)
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
		require.Contains(t, err.Error(), "127.0.0.2")
		require.Contains(t, err.Error(), "all 2 attempts failed")

		_, _, err = kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "missing.test", port, nil)
		var dnsErr *net.DNSError
		require.ErrorAs(t, err, &dnsErr, "resolver errors come through")

		srv, err := kernel.CreateServer(co, newEcho, []string{"127.0.0.2"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		// Same port number on 127.0.0.1 refused, on 127.0.0.2 served.
		srvPort := tcpPort(t, srv, 0)
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "two.test", srvPort, nil)
		if err != nil {
			return err
		}
		peer, _ := tr.GetExtraInfo("peername")
		require.Equal(t, "127.0.0.2:"+srvPort, peer.(net.Addr).String())
		tr.Close()
		return nil
	})
}

// caseConnectHappyEyeballs: with a delay set the attempts are staggered:
// a failing first address does not hold up the second, and neither does a
// first address that never answers (a listener whose accept queue is full
// drops SYNs, so a connect to it hangs).
func caseConnectHappyEyeballs(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	res := &fakeResolver{answers: map[string][]netip.Addr{}}
	l.SetResolver(res)
	lo1, lo2 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	res.answers["he.test"] = []netip.Addr{lo1, lo2}
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, newEcho, []string{"127.0.0.2"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		port := tcpPort(t, srv, 0)
		// 127.0.0.1 refuses: the second attempt starts at once, long before
		// the hour's delay.
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "he.test", port,
			&kernel.ConnOptions{HappyEyeballsDelay: time.Hour})
		if err != nil {
			return err
		}
		tr.Close()

		// 127.0.0.1 on the same port now hangs.
		stall := stalledListener(t, port)
		if stall == nil {
			t.Skip("could not make a loopback connect hang (accept queue overflow did not drop SYNs)")
		}
		defer stall()
		// Without staggering, attempt 2 would wait for attempt 1 to time
		// out (minutes of SYN retries) and the watchdog would fail the test.
		tr, _, err = kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "he.test", port,
			&kernel.ConnOptions{HappyEyeballsDelay: 20 * time.Millisecond})
		if err != nil {
			return err
		}
		peer, _ := tr.GetExtraInfo("peername")
		require.Equal(t, "127.0.0.2:"+port, peer.(net.Addr).String(), "the second address won the race")
		tr.Close()
		return nil
	})
}

// stalledListener listens on 127.0.0.1:port with a full accept queue, so
// new connects to it hang; it returns a cleanup, or nil if no connect hung.
func stalledListener(t *testing.T, port string) func() {
	p, _ := strconv.Atoi(port)
	ls, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	fds := []int{ls}
	cleanup := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	sa := &unix.SockaddrInet4{Port: p, Addr: [4]byte{127, 0, 0, 1}}
	require.NoError(t, unix.Bind(ls, sa))
	require.NoError(t, unix.Listen(ls, 0))
	for range 8 {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		fds = append(fds, c)
		if err := unix.Connect(c, sa); err != nil && err != unix.EINPROGRESS {
			require.NoError(t, err)
		}
		pfd := []unix.PollFd{{Fd: int32(c), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, 100)
		require.NoError(t, err)
		if n == 0 {
			return cleanup // this connect hangs: the queue is full
		}
	}
	cleanup()
	return nil
}

func caseConnectLocalAddr(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, newEcho, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		port := tcpPort(t, srv, 0)
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "127.0.0.1", port,
			&kernel.ConnOptions{LocalAddr: "127.0.0.3:0"})
		if err != nil {
			return err
		}
		sn, _ := tr.GetExtraInfo("sockname")
		require.Equal(t, "127.0.0.3", sn.(*net.TCPAddr).IP.String())
		tr.Close()
		if hasIPv6Loopback() {
			_, _, err = kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "127.0.0.1", port,
				&kernel.ConnOptions{LocalAddr: "[::1]:0"})
			require.ErrorIs(t, err, syscall.EADDRNOTAVAIL, "no local address of the remote's family")
		}
		return nil
	})
}

// caseConnectCancelled: cancelling the task while the name is being
// resolved abandons the lookup and returns the cancellation.
func caseConnectCancelled(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	res := &fakeResolver{hold: true}
	l.SetResolver(res)
	runCo(t, l, func(co *kernel.Co) error {
		task, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
			_, _, err := kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "slow.test", "80", nil)
			return struct{}{}, err
		})
		require.NoError(t, err)
		if err := waitUntil(co, "lookup started", func() bool { return res.calls.Load() == 1 }); err != nil {
			return err
		}
		task.Cancel()
		_, err = task.Await(co)
		require.ErrorIs(t, err, kernel.ErrCancelled)
		return waitUntil(co, "lookup abandoned", res.cancelled.Load)
	})
}

func caseConnectArgs(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	runCo(t, l, func(co *kernel.Co) error {
		_, _, err := kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "", "", nil)
		require.ErrorIs(t, err, kernel.ErrInvalidArgument)
		s, err := kernel.NewSocket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		require.NoError(t, err)
		defer s.Close()
		_, _, err = kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "127.0.0.1", "1", &kernel.ConnOptions{Sock: s})
		require.ErrorIs(t, err, kernel.ErrInvalidArgument)
		_, _, err = kernel.CreateUnixConnection(co, func() *recProto { return &recProto{} }, "", nil)
		require.ErrorIs(t, err, kernel.ErrInvalidArgument)
		_, _, err = kernel.CreateUnixConnection(co, func() *recProto { return &recProto{} }, "/nonexistent/loopkernel.sock", nil)
		require.ErrorIs(t, err, syscall.ENOENT)

		// A protocol that is neither kind of stream protocol is refused
		// before anything is connected.
		srv, err := kernel.CreateServer(co, newEcho, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		_, _, err = kernel.CreateConnection(co, func() *dgProto { return &dgProto{} }, "127.0.0.1", tcpPort(t, srv, 0), nil)
		require.ErrorIs(t, err, kernel.ErrInvalidArgument)

		// A panic in ConnectionMade fails the connection.
		exc := excRecorder(l)
		p := &recProto{onMade: func(*recProto) { panic("made boom") }}
		_, _, err = kernel.CreateConnection(co, func() *recProto { return p }, "127.0.0.1", tcpPort(t, srv, 0), nil)
		var pe *kernel.PanicError
		require.ErrorAs(t, err, &pe)
		require.Len(t, *exc, 1)
		if err := waitUntil(co, "lost", func() bool { return p.lost == 1 }); err != nil {
			return err
		}
		l.SetExceptionHandler(nil)
		return nil
	})
}
