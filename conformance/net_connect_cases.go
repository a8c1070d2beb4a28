package conformance

import (
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
)

// Connecting: every resolved address tried, staggered attempts, local
// addresses, cancellation and argument checks. Names are answered by a
// fake resolver, so only loopback addresses are ever dialled.
var netConnectCases = []ncase{
	{name: "net/connect/every-address", run: nConnectEveryAddress},
	{name: "net/connect/happy-eyeballs", run: nConnectHappyEyeballs},
	{name: "net/connect/local-addr", run: nConnectLocalAddr},
	{name: "net/connect/cancelled-while-resolving", run: nConnectCancelled},
	{name: "net/connect/bad-arguments", run: nConnectArgs},
}

// nConnectEveryAddress: every resolved address is tried in order; when all
// fail the error carries each attempt, and a later address that works wins
// over earlier failures.
func nConnectEveryAddress(n *nt) {
	l := n.newLoop()
	lo := netip.MustParseAddr("127.0.0.1")
	lo2 := netip.MustParseAddr("127.0.0.2")
	l.SetResolver(&fakeResolver{answers: map[string][]netip.Addr{"two.test": {lo, lo2}}})
	port, _ := n.refusingPort() // refused on 127.0.0.1, and free on 127.0.0.2
	n.run(l, "connect tries every address", func(co *kernel.Co) error {
		_, _, err := kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "two.test", port, nil)
		var ce *kernel.ConnectError
		require.ErrorAs(n, err, &ce, "rule: a failed connect is a *ConnectError")
		require.Len(n, ce.Errs, 2, "rule: one error per address tried: %v", err)
		require.ErrorIs(n, err, syscall.ECONNREFUSED)
		require.Contains(n, err.Error(), "127.0.0.2", "rule: the error names the addresses tried")
		require.Contains(n, err.Error(), "all 2 attempts failed")

		_, _, err = kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "missing.test", port, nil)
		var dnsErr *net.DNSError
		require.ErrorAs(n, err, &dnsErr, "rule: resolver errors come through")

		srv, err := kernel.CreateServer(co, newEcho, []string{"127.0.0.2"}, port, nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		// Same port number on 127.0.0.1 refused, on 127.0.0.2 served.
		srvPort := n.tcpPort(srv, 0)
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "two.test", srvPort, nil)
		if err != nil {
			return err
		}
		peer, _ := tr.GetExtraInfo("peername")
		require.Equal(n, "127.0.0.2:"+srvPort, peer.(net.Addr).String(), "rule: a later address that works wins")
		tr.Close()
		return nil
	})
}

// nConnectHappyEyeballs: with a delay set the attempts are staggered: a
// failing first address does not hold up the second, and neither does a
// first address that never answers (a listener whose accept queue is full
// drops SYNs, so a connect to it hangs).
func nConnectHappyEyeballs(n *nt) {
	l := n.newLoop()
	lo1, lo2 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	l.SetResolver(&fakeResolver{answers: map[string][]netip.Addr{"he.test": {lo1, lo2}}})
	n.run(l, "staggered connects", func(co *kernel.Co) error {
		port, stall := n.refusingPort()
		srv, err := kernel.CreateServer(co, newEcho, []string{"127.0.0.2"}, port, nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		// 127.0.0.1 refuses: the second attempt starts at once, long before
		// the hour's delay.
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "he.test", port,
			&kernel.ConnOptions{HappyEyeballsDelay: time.Hour})
		if err != nil {
			return err
		}
		tr.Close()

		// 127.0.0.1 on the same port now hangs.
		if !stall() {
			n.Skip("needs a loopback connect that hangs: overflowing a listener's accept queue did not drop SYNs here")
		}
		// Without staggering, attempt 2 would wait for attempt 1 to time
		// out (minutes of SYN retries) and the watchdog would fail the case.
		tr, _, err = kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "he.test", port,
			&kernel.ConnOptions{HappyEyeballsDelay: 20 * time.Millisecond})
		if err != nil {
			return err
		}
		peer, _ := tr.GetExtraInfo("peername")
		require.Equal(n, "127.0.0.2:"+port, peer.(net.Addr).String(), "rule: with HappyEyeballsDelay, the second address wins while the first hangs")
		tr.Close()
		return nil
	})
}

// refusingPort binds a TCP socket to 127.0.0.1 on a port the system
// picks, without listening: connects to it are refused, and no other
// process can take the port while the case runs (a server on 127.0.0.2
// can, on the same number). stall then makes it a listener whose accept
// queue is full, so that new connects to it hang, and reports whether a
// connect did hang. Its descriptors are closed when the case ends.
func (n *nt) refusingPort() (port string, stall func() bool) {
	ls, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	n.fixture("socket", err)
	n.own(ls)
	n.fixture("bind 127.0.0.1", unix.Bind(ls, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	bound, err := unix.Getsockname(ls)
	n.fixture("getsockname", err)
	sa := bound.(*unix.SockaddrInet4)
	return strconv.Itoa(sa.Port), func() bool { return n.stall(ls, sa) }
}

// stall listens on ls, bound to sa, with a full accept queue.
func (n *nt) stall(ls int, sa *unix.SockaddrInet4) bool {
	n.fixture("listen", unix.Listen(ls, 0))
	for range 8 {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		n.fixture("socket", err)
		n.own(c)
		if err := unix.Connect(c, sa); err != nil && err != unix.EINPROGRESS {
			n.fixture("connect", err)
		}
		pfd := []unix.PollFd{{Fd: int32(c), Events: unix.POLLOUT}}
		k, err := unix.Poll(pfd, 100)
		n.fixture("poll", err)
		if k == 0 {
			return true // this connect hangs: the queue is full
		}
	}
	return false
}

// nConnectLocalAddr: LocalAddr binds the client's end; a local address of
// another family than the remote's fails.
func nConnectLocalAddr(n *nt) {
	l := n.newLoop()
	n.run(l, "connect from a local address", func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, newEcho, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		port := n.tcpPort(srv, 0)
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "127.0.0.1", port,
			&kernel.ConnOptions{LocalAddr: "127.0.0.3:0"})
		if err != nil {
			return err
		}
		sn, _ := tr.GetExtraInfo("sockname")
		require.Equal(n, "127.0.0.3", sn.(*net.TCPAddr).IP.String(), "rule: LocalAddr binds the client's end")
		tr.Close()
		if ipv6Loopback() == "" {
			_, _, err = kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "127.0.0.1", port,
				&kernel.ConnOptions{LocalAddr: "[::1]:0"})
			require.ErrorIs(n, err, syscall.EADDRNOTAVAIL, "rule: no local address of the remote's family is EADDRNOTAVAIL")
		}
		return nil
	})
}

// nConnectCancelled: cancelling the task while the name is being resolved
// abandons the lookup and returns the cancellation.
func nConnectCancelled(n *nt) {
	l := n.newLoop()
	res := &fakeResolver{hold: true}
	l.SetResolver(res)
	n.run(l, "cancel while resolving", func(co *kernel.Co) error {
		task, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
			_, _, err := kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "slow.test", "80", nil)
			return struct{}{}, err
		})
		require.NoError(n, err)
		if err := n.waitUntil(co, "rule: the lookup starts", func() bool { return res.calls.Load() == 1 }); err != nil {
			return err
		}
		task.Cancel()
		_, err = task.Await(co)
		require.ErrorIs(n, err, kernel.ErrCancelled, "rule: a cancelled connect returns the cancellation")
		return n.waitUntil(co, "rule: cancelling a connect abandons its lookup", res.cancelled.Load)
	})
}

// nConnectArgs: bad arguments are refused before anything is connected; a
// panic in ConnectionMade fails the connection.
func nConnectArgs(n *nt) {
	l := n.newLoop()
	n.run(l, "connect arguments", func(co *kernel.Co) error {
		_, _, err := kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "", "", nil)
		require.ErrorIs(n, err, kernel.ErrInvalidArgument, "rule: no host and no socket is refused")
		s, err := kernel.NewSocket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		n.fixture("socket", err)
		defer s.Close()
		_, _, err = kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "127.0.0.1", "1", &kernel.ConnOptions{Sock: s})
		require.ErrorIs(n, err, kernel.ErrInvalidArgument, "rule: a host together with Sock is refused")
		_, _, err = kernel.CreateUnixConnection(co, func() *recProto { return &recProto{} }, "", nil)
		require.ErrorIs(n, err, kernel.ErrInvalidArgument, "rule: an empty Unix path is refused")
		_, _, err = kernel.CreateUnixConnection(co, func() *recProto { return &recProto{} }, "/nonexistent/loopkernel.sock", nil)
		require.ErrorIs(n, err, syscall.ENOENT)

		srv, err := kernel.CreateServer(co, newEcho, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		// A protocol that is neither kind of stream protocol is refused
		// before anything is connected.
		_, _, err = kernel.CreateConnection(co, func() *dgProto { return &dgProto{} }, "127.0.0.1", n.tcpPort(srv, 0), nil)
		require.ErrorIs(n, err, kernel.ErrInvalidArgument, "rule: a datagram protocol on a stream connection is refused")

		exc := excRecorder(l)
		p := &recProto{onMade: func(*recProto) { panic("made boom") }}
		_, _, err = kernel.CreateConnection(co, func() *recProto { return p }, "127.0.0.1", n.tcpPort(srv, 0), nil)
		var pe *kernel.PanicError
		require.ErrorAs(n, err, &pe, "rule: a panic in ConnectionMade fails CreateConnection with a *PanicError")
		require.Len(n, *exc, 1, "rule: the panic is reported once")
		if err := n.waitUntil(co, "rule: a connection whose ConnectionMade panicked is lost", func() bool { return p.lost == 1 }); err != nil {
			return err
		}
		l.SetExceptionHandler(nil)
		return nil
	})
}
