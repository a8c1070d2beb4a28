package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
)

// Datagram endpoints: UDP and Unix datagram sockets under
// CreateDatagramEndpoint.
var netDatagramCases = []ncase{
	{name: "net/datagram/echo", run: nDatagramEcho},
	{name: "net/datagram/refused-then-receives", run: nDatagramRefused},
	{name: "net/datagram/unix-abstract", run: nDatagramUnix},
	{name: "net/datagram/send-buffer", run: nDatagramSendBuffer},
	{name: "net/datagram/bad-arguments", run: nDatagramArgs},
	{name: "net/datagram/protocol-panic", run: nDatagramPanic},
}

// nDatagramEcho: datagrams of 0 B to 60000 B make a round trip through an
// echo endpoint, one at a time (UDP may drop what overflows a buffer).
func nDatagramEcho(n *nt) {
	l := n.newLoop()
	n.run(l, "datagram echo", func(co *kernel.Co) error {
		srv := &dgProto{echo: true}
		str, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return srv }, &kernel.DatagramOptions{LocalAddr: "127.0.0.1:0"})
		if err != nil {
			return err
		}
		defer str.Close()
		sa, ok := str.GetExtraInfo("sockname")
		require.True(n, ok, "rule: sockname is known")
		cli := &dgProto{}
		ctr, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return cli }, &kernel.DatagramOptions{RemoteAddr: sa.(net.Addr).String()})
		if err != nil {
			return err
		}
		require.Equal(n, 1, cli.made, "rule: ConnectionMade before CreateDatagramEndpoint returns")
		peer, ok := ctr.GetExtraInfo("peername")
		require.True(n, ok, "rule: a connected endpoint knows its peername")
		require.Equal(n, sa.(net.Addr).String(), peer.(net.Addr).String())
		for i, size := range []int{0, 1, 100, 1400, 9000, 60000} {
			require.NoError(n, ctr.SendTo(pattern(size), nil))
			if err := n.waitUntil(co, fmt.Sprintf("rule: a %d-byte datagram comes back", size), func() bool { return len(cli.got) == i+1 }); err != nil {
				return err
			}
			require.True(n, bytes.Equal(pattern(size), cli.got[i]), "rule: a datagram arrives whole and intact (size %d)", size)
		}
		// One peer: the server saw the same address object every time,
		// because the transport reuses the last converted source address.
		for _, a := range srv.from[1:] {
			require.Same(n, srv.from[0], a, "rule: datagrams from one peer reuse one address value")
		}
		require.Empty(n, cli.errs)
		require.Empty(n, srv.errs)
		ctr.Close()
		require.ErrorIs(n, ctr.SendTo([]byte("x"), nil), kernel.ErrTransportClosed, "rule: SendTo on a closed endpoint fails")
		if err := n.waitUntil(co, "rule: Close ends in ConnectionLost", func() bool { return cli.lost == 1 }); err != nil {
			return err
		}
		require.NoError(n, cli.lostErr, "rule: a clean close reports ConnectionLost(nil)")
		return nil
	})
}

// nDatagramRefused: sending on a connected UDP endpoint to a port with no
// listener brings ECONNREFUSED to ErrorReceived (from the ICMP port
// unreachable), and the endpoint keeps working: once a listener appears on
// that port, its replies arrive.
func nDatagramRefused(n *nt) {
	l := n.newLoop()
	port := n.closedUDPPort()
	n.run(l, "UDP to a port with no listener", func(co *kernel.Co) error {
		cli := &dgProto{}
		ctr, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return cli }, &kernel.DatagramOptions{RemoteAddr: fmt.Sprintf("127.0.0.1:%d", port)})
		if err != nil {
			return err
		}
		defer ctr.Close()
		require.NoError(n, ctr.SendTo([]byte("anyone?"), nil))
		if err := n.waitUntil(co, "rule: ECONNREFUSED from an ICMP port unreachable reaches ErrorReceived", func() bool {
			if len(cli.errs) == 0 {
				// The error may surface on the next send instead.
				ctr.SendTo([]byte("anyone?"), nil)
			}
			return len(cli.errs) > 0
		}); err != nil {
			return err
		}
		require.ErrorIs(n, cli.errs[0], syscall.ECONNREFUSED)
		require.False(n, ctr.IsClosing(), "rule: an ICMP error does not close the endpoint")

		srv := &dgProto{echo: true}
		str, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return srv }, &kernel.DatagramOptions{LocalAddr: fmt.Sprintf("127.0.0.1:%d", port)})
		if err != nil {
			return err
		}
		defer str.Close()
		require.NoError(n, ctr.SendTo([]byte("now?"), nil))
		if err := n.waitUntil(co, "rule: after ECONNREFUSED the endpoint still receives", func() bool { return len(cli.got) > 0 }); err != nil {
			return err
		}
		require.Equal(n, "now?", string(cli.got[0]))
		require.Equal(n, 0, cli.lost, "rule: an ICMP error does not lose the connection")
		return nil
	})
}

// nDatagramUnix: Unix datagram endpoints on abstract names, each side
// seeing the other's name.
func nDatagramUnix(n *nt) {
	l := n.newLoop()
	base := abstractName("dgram")
	n.run(l, "unix datagrams on abstract names", func(co *kernel.Co) error {
		srv := &dgProto{echo: true}
		str, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return srv },
			&kernel.DatagramOptions{Family: syscall.AF_UNIX, LocalAddr: base + "-srv"})
		if err != nil {
			return err
		}
		defer str.Close()
		cli := &dgProto{}
		ctr, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return cli },
			&kernel.DatagramOptions{Family: syscall.AF_UNIX, LocalAddr: base + "-cli", RemoteAddr: base + "-srv"})
		if err != nil {
			return err
		}
		defer ctr.Close()
		require.NoError(n, ctr.SendTo([]byte("over unix"), nil))
		if err := n.waitUntil(co, "rule: a Unix datagram echo arrives", func() bool { return len(cli.got) == 1 }); err != nil {
			return err
		}
		require.Equal(n, "over unix", string(cli.got[0]))
		require.Equal(n, base+"-cli", srv.from[0].(*net.UnixAddr).Name, "rule: the receiver sees the sender's abstract name")
		require.Equal(n, base+"-srv", cli.from[0].(*net.UnixAddr).Name, "rule: the reply comes from the server's abstract name")
		return nil
	})
}

// nDatagramSendBuffer: when the socket refuses datagrams (EAGAIN: the peer
// of a Unix datagram pair does not read), they wait in the buffer, the
// protocol is paused past the high water mark, and everything is delivered
// in order once the peer reads.
func nDatagramSendBuffer(n *nt) {
	l := n.newLoop()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	n.fixture("socketpair", err)
	peer := fds[1]
	n.own(peer)
	sock, err := kernel.SocketFromFD(fds[0])
	n.fixture("SocketFromFD", err)
	n.run(l, "datagram send buffer", func(co *kernel.Co) error {
		p := &dgProto{}
		tr, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return p }, &kernel.DatagramOptions{Sock: sock})
		if err != nil {
			return err
		}
		const count = 300
		msg := make([]byte, 1000)
		for i := range count {
			msg[0], msg[1] = byte(i), byte(i>>8)
			require.NoError(n, tr.SendTo(msg, nil))
		}
		require.Greater(n, tr.GetWriteBufferSize(), 64<<10, "rule: datagrams the socket refuses wait in the buffer")
		require.Equal(n, 1, p.paused, "rule: PauseWriting once past the high water mark")
		buf := make([]byte, 2000)
		got := 0
		if err := n.waitUntil(co, "rule: buffered datagrams are all sent once the peer reads", func() bool {
			for {
				k, err := unix.Read(peer, buf)
				if err != nil {
					return got == count
				}
				require.Equal(n, 1000, k, "rule: a buffered datagram goes out whole")
				require.Equal(n, got, int(buf[0])|int(buf[1])<<8, "rule: buffered datagrams go out in order")
				got++
			}
		}); err != nil {
			return err
		}
		require.Equal(n, 0, tr.GetWriteBufferSize())
		require.Equal(n, 1, p.resumed, "rule: ResumeWriting once the buffer drains")
		require.NoError(n, tr.SendTo([]byte("last"), nil))
		tr.Close()
		return n.waitUntil(co, "rule: Close ends in ConnectionLost", func() bool { return p.lost == 1 })
	})
}

// nDatagramArgs: bad arguments are refused; an unconnected endpoint needs
// a destination; a connected one refuses any other.
func nDatagramArgs(n *nt) {
	l := n.newLoop()
	n.run(l, "datagram arguments", func(co *kernel.Co) error {
		_, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return &dgProto{} }, nil)
		require.ErrorIs(n, err, kernel.ErrInvalidArgument, "rule: no address and no family is refused")
		sock, err := kernel.NewSocket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		n.fixture("socket", err)
		defer sock.Close()
		_, _, err = kernel.CreateDatagramEndpoint(co, func() *dgProto { return &dgProto{} }, &kernel.DatagramOptions{Sock: sock})
		require.ErrorIs(n, err, kernel.ErrInvalidArgument, "rule: a stream socket is refused")
		_, _, err = kernel.CreateDatagramEndpoint(co, func() *dgProto { return &dgProto{} }, &kernel.DatagramOptions{LocalAddr: "127.0.0.1:0", RemoteAddr: "[::1]:9"})
		require.ErrorIs(n, err, kernel.ErrInvalidArgument, "rule: local and remote of different families are refused")

		// Unconnected, family only: SendTo needs an address.
		p := &dgProto{}
		tr, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return p }, &kernel.DatagramOptions{Family: syscall.AF_INET, AllowBroadcast: true})
		if err != nil {
			return err
		}
		s, _ := tr.GetExtraInfo("socket")
		bc, err := s.(*kernel.Socket).GetsockoptInt(syscall.SOL_SOCKET, syscall.SO_BROADCAST)
		require.NoError(n, err)
		require.Equal(n, 1, bc, "rule: AllowBroadcast sets SO_BROADCAST")
		require.NoError(n, tr.SendTo([]byte("x"), nil))
		require.Len(n, p.errs, 1, "rule: SendTo without a destination on an unconnected endpoint reports an error")
		require.ErrorIs(n, p.errs[0], syscall.EDESTADDRREQ)
		tr.Abort()
		if err := n.waitUntil(co, "rule: Abort ends in ConnectionLost", func() bool { return p.lost == 1 }); err != nil {
			return err
		}

		// Connected: another destination is refused. Port 9 (discard) on
		// loopback: nothing need listen.
		c := &dgProto{}
		ctr, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return c }, &kernel.DatagramOptions{RemoteAddr: "127.0.0.1:9"})
		if err != nil {
			return err
		}
		defer ctr.Close()
		err = ctr.SendTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 10})
		require.ErrorIs(n, err, kernel.ErrInvalidArgument, "rule: a connected endpoint refuses another destination")
		require.NoError(n, ctr.SendTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}), "rule: a connected endpoint takes its own peer as destination")
		return nil
	})
}

// nDatagramPanic: a panic in DatagramReceived is reported with the
// protocol and transport, and the endpoint goes on (asyncio's behaviour).
func nDatagramPanic(n *nt) {
	l := n.newLoop()
	exc := excRecorder(l)
	n.run(l, "datagram protocol panic", func(co *kernel.Co) error {
		srv := &dgProto{panicOn: "boom"}
		str, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return srv }, &kernel.DatagramOptions{LocalAddr: "127.0.0.1:0"})
		if err != nil {
			return err
		}
		sa, _ := str.GetExtraInfo("sockname")
		cli := &dgProto{}
		ctr, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return cli }, &kernel.DatagramOptions{RemoteAddr: sa.(net.Addr).String()})
		if err != nil {
			return err
		}
		defer ctr.Close()
		ctr.SendTo([]byte("boom"), nil)
		if err := n.waitUntil(co, "rule: a panic in DatagramReceived is reported", func() bool { return len(*exc) == 1 }); err != nil {
			return err
		}
		require.Same(n, srv, (*exc)[0].Protocol, "rule: the report carries the protocol")
		require.NotNil(n, (*exc)[0].Transport, "rule: the report carries the transport")
		var pe *kernel.PanicError
		require.True(n, errors.As((*exc)[0].Err, &pe), "rule: the report's error is a *PanicError")
		require.False(n, str.IsClosing(), "rule: the endpoint stays open after a protocol panic")
		ctr.SendTo([]byte("fine"), nil)
		if err := n.waitUntil(co, "rule: the endpoint receives after a protocol panic", func() bool { return len(srv.got) == 1 }); err != nil {
			return err
		}
		require.Equal(n, "fine", string(srv.got[0]))
		str.Close()
		return n.waitUntil(co, "rule: Close ends in ConnectionLost", func() bool { return srv.lost == 1 })
	})
}
