package kernel_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
)

func TestDatagramEcho(t *testing.T)          { forEachBackend(t, caseDatagramEcho) }
func TestDatagramICMPRefused(t *testing.T)   { forEachBackend(t, caseDatagramRefused) }
func TestDatagramUnixAbstract(t *testing.T)  { forEachBackend(t, caseDatagramUnix) }
func TestDatagramSendBuffer(t *testing.T)    { forEachBackend(t, caseDatagramSendBuffer) }
func TestDatagramArgs(t *testing.T)          { forEachBackend(t, caseDatagramArgs) }
func TestDatagramProtocolPanic(t *testing.T) { forEachBackend(t, caseDatagramPanic) }

// dgProto records a datagram endpoint's events.
type dgProto struct {
	tr      kernel.DatagramTransport
	made    int
	lost    int
	lostErr error
	got     [][]byte
	from    []net.Addr
	errs    []error
	echo    bool
	panicOn string
	paused  int
	resumed int
}

func (p *dgProto) ConnectionMade(t kernel.BaseTransport) {
	p.made++
	p.tr = t.(kernel.DatagramTransport)
}
func (p *dgProto) ConnectionLost(err error) { p.lost++; p.lostErr = err }
func (p *dgProto) DatagramReceived(b []byte, addr net.Addr) {
	if p.panicOn != "" && string(b) == p.panicOn {
		panic("datagram boom")
	}
	p.got = append(p.got, append([]byte(nil), b...))
	p.from = append(p.from, addr)
	if p.echo {
		p.tr.SendTo(b, addr)
	}
}
func (p *dgProto) ErrorReceived(err error) { p.errs = append(p.errs, err) }
func (p *dgProto) PauseWriting()           { p.paused++ }
func (p *dgProto) ResumeWriting()          { p.resumed++ }

// caseDatagramEcho: datagrams of 0 B to 60000 B make a round trip through
// an echo endpoint, one at a time (UDP may drop what overflows a buffer).
func caseDatagramEcho(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	runCo(t, l, func(co *kernel.Co) error {
		srv := &dgProto{echo: true}
		str, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return srv }, &kernel.DatagramOptions{LocalAddr: "127.0.0.1:0"})
		if err != nil {
			return err
		}
		defer str.Close()
		sa, ok := str.GetExtraInfo("sockname")
		require.True(t, ok)
		cli := &dgProto{}
		ctr, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return cli }, &kernel.DatagramOptions{RemoteAddr: sa.(net.Addr).String()})
		if err != nil {
			return err
		}
		require.Equal(t, 1, cli.made)
		peer, ok := ctr.GetExtraInfo("peername")
		require.True(t, ok)
		require.Equal(t, sa.(net.Addr).String(), peer.(net.Addr).String())
		sizes := []int{0, 1, 100, 1400, 9000, 60000}
		for i, n := range sizes {
			require.NoError(t, ctr.SendTo(pattern(n), nil))
			if err := waitUntil(co, "echo", func() bool { return len(cli.got) == i+1 }); err != nil {
				return err
			}
			require.True(t, bytes.Equal(pattern(n), cli.got[i]), "size %d", n)
		}
		// One peer: the server saw the same address object every time,
		// because the transport reuses the last converted source address.
		for _, a := range srv.from[1:] {
			require.Same(t, srv.from[0], a)
		}
		require.Empty(t, cli.errs)
		require.Empty(t, srv.errs)
		ctr.Close()
		require.ErrorIs(t, ctr.SendTo([]byte("x"), nil), kernel.ErrTransportClosed)
		if err := waitUntil(co, "lost", func() bool { return cli.lost == 1 }); err != nil {
			return err
		}
		require.NoError(t, cli.lostErr)
		return nil
	})
}

// freeUDPPort returns a loopback UDP port that nothing listens on now.
func freeUDPPort(t *testing.T) int {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	return port
}

// caseDatagramRefused: sending on a connected UDP endpoint to a port with
// no listener brings ECONNREFUSED to ErrorReceived (from the ICMP port
// unreachable), and the endpoint keeps working: once a listener appears on
// that port, its replies arrive.
func caseDatagramRefused(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	port := freeUDPPort(t)
	runCo(t, l, func(co *kernel.Co) error {
		cli := &dgProto{}
		ctr, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return cli }, &kernel.DatagramOptions{RemoteAddr: fmt.Sprintf("127.0.0.1:%d", port)})
		if err != nil {
			return err
		}
		defer ctr.Close()
		require.NoError(t, ctr.SendTo([]byte("anyone?"), nil))
		if err := waitUntil(co, "ECONNREFUSED", func() bool {
			if len(cli.errs) == 0 {
				// The error may surface on the next send instead.
				ctr.SendTo([]byte("anyone?"), nil)
			}
			return len(cli.errs) > 0
		}); err != nil {
			return err
		}
		require.ErrorIs(t, cli.errs[0], syscall.ECONNREFUSED)
		require.False(t, ctr.IsClosing(), "an ICMP error does not close the endpoint")

		srv := &dgProto{echo: true}
		str, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return srv }, &kernel.DatagramOptions{LocalAddr: fmt.Sprintf("127.0.0.1:%d", port)})
		if err != nil {
			return err
		}
		defer str.Close()
		require.NoError(t, ctr.SendTo([]byte("now?"), nil))
		if err := waitUntil(co, "reply", func() bool { return len(cli.got) > 0 }); err != nil {
			return err
		}
		require.Equal(t, "now?", string(cli.got[0]))
		require.Equal(t, 0, cli.lost)
		return nil
	})
}

// caseDatagramUnix: Unix datagram endpoints on abstract names.
func caseDatagramUnix(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	base := fmt.Sprintf("@loopkernel-dg-%d-%d", os.Getpid(), time.Now().UnixNano())
	runCo(t, l, func(co *kernel.Co) error {
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
		require.NoError(t, ctr.SendTo([]byte("over unix"), nil))
		if err := waitUntil(co, "echo", func() bool { return len(cli.got) == 1 }); err != nil {
			return err
		}
		require.Equal(t, "over unix", string(cli.got[0]))
		require.Equal(t, base+"-cli", srv.from[0].(*net.UnixAddr).Name)
		require.Equal(t, base+"-srv", cli.from[0].(*net.UnixAddr).Name)
		return nil
	})
}

// caseDatagramSendBuffer: when the socket refuses datagrams (EAGAIN: the
// peer of a Unix datagram pair does not read), they wait in the buffer, the
// protocol is paused past the high water mark, and everything is delivered
// in order once the peer reads.
func caseDatagramSendBuffer(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	peer := fds[1]
	defer unix.Close(peer)
	sock, err := kernel.SocketFromFD(fds[0])
	require.NoError(t, err)
	runCo(t, l, func(co *kernel.Co) error {
		p := &dgProto{}
		tr, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return p }, &kernel.DatagramOptions{Sock: sock})
		if err != nil {
			return err
		}
		const n = 300
		msg := make([]byte, 1000)
		for i := range n {
			msg[0], msg[1] = byte(i), byte(i>>8)
			require.NoError(t, tr.SendTo(msg, nil))
		}
		require.Greater(t, tr.GetWriteBufferSize(), 64<<10, "the pair's queue is far smaller than 300 KB")
		require.Equal(t, 1, p.paused)
		buf := make([]byte, 2000)
		got := 0
		if err := waitUntil(co, "all datagrams", func() bool {
			for {
				k, err := unix.Read(peer, buf)
				if err != nil {
					return got == n
				}
				require.Equal(t, 1000, k)
				require.Equal(t, got, int(buf[0])|int(buf[1])<<8, "datagrams arrive in order")
				got++
			}
		}); err != nil {
			return err
		}
		require.Equal(t, 0, tr.GetWriteBufferSize())
		require.Equal(t, 1, p.resumed)
		require.NoError(t, tr.SendTo([]byte("last"), nil))
		tr.Close()
		return waitUntil(co, "lost", func() bool { return p.lost == 1 })
	})
}

func caseDatagramArgs(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	runCo(t, l, func(co *kernel.Co) error {
		_, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return &dgProto{} }, nil)
		require.ErrorIs(t, err, kernel.ErrInvalidArgument, "no address and no family")
		sock, err := kernel.NewSocket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		require.NoError(t, err)
		defer sock.Close()
		_, _, err = kernel.CreateDatagramEndpoint(co, func() *dgProto { return &dgProto{} }, &kernel.DatagramOptions{Sock: sock})
		require.ErrorIs(t, err, kernel.ErrInvalidArgument, "stream socket")
		_, _, err = kernel.CreateDatagramEndpoint(co, func() *dgProto { return &dgProto{} }, &kernel.DatagramOptions{LocalAddr: "127.0.0.1:0", RemoteAddr: "[::1]:9"})
		require.ErrorIs(t, err, kernel.ErrInvalidArgument, "families do not match")

		// Unconnected, family only: SendTo needs an address.
		p := &dgProto{}
		tr, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return p }, &kernel.DatagramOptions{Family: syscall.AF_INET, AllowBroadcast: true})
		if err != nil {
			return err
		}
		s, _ := tr.GetExtraInfo("socket")
		bc, err := s.(*kernel.Socket).GetsockoptInt(syscall.SOL_SOCKET, syscall.SO_BROADCAST)
		require.NoError(t, err)
		require.Equal(t, 1, bc)
		require.NoError(t, tr.SendTo([]byte("x"), nil))
		require.Len(t, p.errs, 1)
		require.ErrorIs(t, p.errs[0], syscall.EDESTADDRREQ)
		tr.Abort()
		if err := waitUntil(co, "lost", func() bool { return p.lost == 1 }); err != nil {
			return err
		}

		// Connected: another destination is refused.
		c := &dgProto{}
		ctr, _, err := kernel.CreateDatagramEndpoint(co, func() *dgProto { return c }, &kernel.DatagramOptions{RemoteAddr: "127.0.0.1:9"})
		if err != nil {
			return err
		}
		defer ctr.Close()
		err = ctr.SendTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 10})
		require.ErrorIs(t, err, kernel.ErrInvalidArgument)
		require.NoError(t, ctr.SendTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}))
		return nil
	})
}

// caseDatagramPanic: a panic in DatagramReceived is reported with the
// protocol and transport, and the endpoint goes on (asyncio's behaviour).
func caseDatagramPanic(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	exc := excRecorder(l)
	runCo(t, l, func(co *kernel.Co) error {
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
		if err := waitUntil(co, "report", func() bool { return len(*exc) == 1 }); err != nil {
			return err
		}
		require.Same(t, srv, (*exc)[0].Protocol)
		require.NotNil(t, (*exc)[0].Transport)
		var pe *kernel.PanicError
		require.True(t, errors.As((*exc)[0].Err, &pe))
		// As in asyncio, the endpoint stays open for the next datagram.
		require.False(t, str.IsClosing())
		ctr.SendTo([]byte("fine"), nil)
		if err := waitUntil(co, "next datagram", func() bool { return len(srv.got) == 1 }); err != nil {
			return err
		}
		require.Equal(t, "fine", string(srv.got[0]))
		str.Close()
		return waitUntil(co, "lost", func() bool { return srv.lost == 1 })
	})
}
