package kernel_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
)

func TestServerCloseRefuses(t *testing.T)    { forEachBackend(t, caseServerCloseRefuses) }
func TestServerWaitClosed(t *testing.T)      { forEachBackend(t, caseServerWaitClosed) }
func TestServerMultiHost(t *testing.T)       { forEachBackend(t, caseServerMultiHost) }
func TestServerAllInterfaces(t *testing.T)   { forEachBackend(t, caseServerAllInterfaces) }
func TestServerServeForever(t *testing.T)    { forEachBackend(t, caseServerServeForever) }
func TestServerSockAndAccepted(t *testing.T) { forEachBackend(t, caseServerSockAndAccepted) }
func TestServerEMFILE(t *testing.T)          { forEachBackend(t, caseServerEMFILE) }

// caseServerCloseRefuses: once a server is closed its port refuses
// connections, connections it accepted earlier carry on, and Sockets is nil.
func caseServerCloseRefuses(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	var srvs serverProtos
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, srvs.factory(newEcho), []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		require.True(t, srv.IsServing())
		require.Same(t, l, srv.GetLoop())
		port := tcpPort(t, srv, 0)
		cli := &recProto{}
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", port, nil)
		if err != nil {
			return err
		}
		require.NoError(t, srv.Close())
		require.NoError(t, srv.Close(), "closing twice is harmless")
		require.False(t, srv.IsServing())
		require.Nil(t, srv.Sockets())
		require.ErrorIs(t, srv.StartServing(), kernel.ErrServerClosed)

		_, _, err = kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "127.0.0.1", port, nil)
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
		var ce *kernel.ConnectError
		require.ErrorAs(t, err, &ce)
		require.Len(t, ce.Errs, 1)
		var oe *net.OpError
		require.ErrorAs(t, err, &oe)

		// The accepted connection survived the close.
		require.NoError(t, tr.Write([]byte("still here")))
		if err := waitUntil(co, "echo", func() bool { return cli.data.String() == "still here" }); err != nil {
			return err
		}
		tr.Close()
		return srv.WaitClosed(co)
	})
}

// caseServerWaitClosed: WaitClosed returns once the server is closed and
// its last connection has ended, not before; afterwards at once.
func caseServerWaitClosed(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, newEcho, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		cli := &recProto{}
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", tcpPort(t, srv, 0), nil)
		if err != nil {
			return err
		}
		waited := false
		waiter, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
			err := srv.WaitClosed(co)
			waited = true
			return struct{}{}, err
		})
		require.NoError(t, err)
		require.NoError(t, co.Sleep(5*time.Millisecond))
		require.False(t, waited, "WaitClosed returned while the server was open")
		srv.Close()
		require.NoError(t, co.Sleep(5*time.Millisecond))
		require.False(t, waited, "WaitClosed returned while a connection was open")
		tr.Close()
		if _, err := waiter.Await(co); err != nil {
			return err
		}
		require.True(t, waited)
		return srv.WaitClosed(co)
	})
}

// caseServerMultiHost: one server on 127.0.0.1 and ::1, reachable on both.
func caseServerMultiHost(t *testing.T, newLoop loopFactory) {
	if !hasIPv6Loopback() {
		t.Skip("needs IPv6 loopback (::1): not configured on this machine")
	}
	l := newLoop(t)
	var srvs serverProtos
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, srvs.factory(newEcho), []string{"127.0.0.1", "::1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		socks := srv.Sockets()
		require.Len(t, socks, 2)
		for _, s := range socks {
			a := s.LocalAddr().(*net.TCPAddr)
			cli := &recProto{}
			tr, _, err := kernel.CreateConnection(co, func() *recProto { return cli }, a.IP.String(), strconv.Itoa(a.Port), nil)
			if err != nil {
				return err
			}
			tr.Write([]byte(a.String()))
			tr.WriteEOF()
			if err := waitUntil(co, "echo", func() bool { return cli.lost == 1 }); err != nil {
				return err
			}
			require.Equal(t, a.String(), cli.data.String())
			if s.Family() == syscall.AF_INET6 {
				v6only, err := s.GetsockoptInt(syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY)
				require.NoError(t, err)
				require.Equal(t, 1, v6only)
			}
		}
		require.Len(t, srvs.list, 2)
		return nil
	})
}

// caseServerAllInterfaces: no host means every interface: one IPv4 socket
// and, where IPv6 exists, one IPV6_V6ONLY IPv6 socket, both listening.
func caseServerAllInterfaces(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, newEcho, nil, "0", &kernel.ServerOptions{Backlog: 5})
		if err != nil {
			return err
		}
		defer srv.Close()
		socks := srv.Sockets()
		want := 1
		if hasIPv6Loopback() {
			want = 2
		}
		require.Len(t, socks, want)
		for _, s := range socks {
			a := s.LocalAddr().(*net.TCPAddr)
			require.True(t, a.IP.IsUnspecified(), "%v", a)
			ra, err := s.GetsockoptInt(syscall.SOL_SOCKET, syscall.SO_REUSEADDR)
			require.NoError(t, err)
			require.Equal(t, 1, ra, "SO_REUSEADDR is on by default")
			if s.Family() == syscall.AF_INET {
				cli := &recProto{}
				tr, _, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", strconv.Itoa(a.Port), nil)
				if err != nil {
					return err
				}
				tr.Close()
			}
		}
		return nil
	})
}

// caseServerServeForever: DeferServing leaves the port refusing until
// ServeForever starts it; Close ends ServeForever with ErrServerClosed; a
// cancelled ServeForever closes the server.
func caseServerServeForever(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, newEcho, []string{"127.0.0.1"}, "0", &kernel.ServerOptions{DeferServing: true})
		if err != nil {
			return err
		}
		require.False(t, srv.IsServing())
		port := tcpPort(t, srv, 0)
		_, _, err = kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "127.0.0.1", port, nil)
		require.ErrorIs(t, err, syscall.ECONNREFUSED, "not listening before serving starts")

		var served error
		task, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
			served = srv.ServeForever(co)
			return struct{}{}, nil
		})
		require.NoError(t, err)
		require.NoError(t, co.Yield())
		require.True(t, srv.IsServing())
		require.ErrorIs(t, srv.ServeForever(co), kernel.ErrInvalidState, "only one ServeForever")
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "127.0.0.1", port, nil)
		if err != nil {
			return err
		}
		tr.Close()
		require.NoError(t, srv.StartServing(), "idempotent")
		srv.Close()
		if _, err := task.Await(co); err != nil {
			return err
		}
		require.ErrorIs(t, served, kernel.ErrServerClosed)

		srv2, err := kernel.CreateServer(co, newEcho, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		task2, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
			return struct{}{}, srv2.ServeForever(co)
		})
		require.NoError(t, err)
		require.NoError(t, co.Yield())
		task2.Cancel()
		_, err = task2.Await(co)
		require.ErrorIs(t, err, kernel.ErrCancelled)
		require.Nil(t, srv2.Sockets(), "cancelling ServeForever closes the server")
		return nil
	})
}

// caseServerSockAndAccepted: a server on a socket the caller made, and a
// connection accepted outside the loop wrapped with ConnectAcceptedSocket.
func caseServerSockAndAccepted(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	runCo(t, l, func(co *kernel.Co) error {
		ls, err := kernel.NewSocket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		require.NoError(t, err)
		require.NoError(t, ls.Bind(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}))
		_, err = kernel.CreateServer(co, newEcho, []string{"127.0.0.1"}, "", &kernel.ServerOptions{Sock: ls})
		require.ErrorIs(t, err, kernel.ErrInvalidArgument, "host with Sock")
		srv, err := kernel.CreateServer(co, newEcho, nil, "", &kernel.ServerOptions{Sock: ls})
		if err != nil {
			return err
		}
		defer srv.Close()
		cli := &recProto{}
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", tcpPort(t, srv, 0), nil)
		if err != nil {
			return err
		}
		tr.Write([]byte("via sock"))
		tr.WriteEOF()
		if err := waitUntil(co, "echo", func() bool { return cli.lost == 1 }); err != nil {
			return err
		}
		require.Equal(t, "via sock", cli.data.String())

		// A listener the loop does not serve; accept by hand.
		raw, err := kernel.NewSocket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		require.NoError(t, err)
		defer raw.Close()
		require.NoError(t, raw.Bind(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}))
		require.NoError(t, raw.Listen(1))
		cli2 := &recProto{}
		tr2, _, err := kernel.CreateConnection(co, func() *recProto { return cli2 }, "127.0.0.1", fmt.Sprint(raw.LocalAddr().(*net.TCPAddr).Port), nil)
		if err != nil {
			return err
		}
		nfd, _, err := unix.Accept4(raw.Fd(), unix.SOCK_CLOEXEC)
		require.NoError(t, err)
		as, err := kernel.SocketFromFD(nfd)
		require.NoError(t, err)
		atr, ap, err := kernel.ConnectAcceptedSocket(co, newEcho, as)
		if err != nil {
			return err
		}
		require.Equal(t, 1, ap.made)
		tr2.Write([]byte("accepted elsewhere"))
		tr2.WriteEOF()
		if err := waitUntil(co, "echo", func() bool { return cli2.lost == 1 }); err != nil {
			return err
		}
		require.Equal(t, "accepted elsewhere", cli2.data.String())
		require.True(t, atr.IsClosing())
		return nil
	})
}

// caseServerEMFILE: when accept fails because the process is out of
// descriptors, the server reports it through the exception handler with the
// listening socket set, keeps serving its existing connections, and accepts
// the waiting client once descriptors are free again. The descriptor limit
// is lowered and the free descriptors consumed, so the failure is certain.
func caseServerEMFILE(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	exc := excRecorder(l)
	var srvs serverProtos
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, srvs.factory(newEcho), []string{"127.0.0.1"}, "0",
			&kernel.ServerOptions{AcceptRetryDelay: 20 * time.Millisecond})
		if err != nil {
			return err
		}
		defer srv.Close()
		port := tcpPort(t, srv, 0)
		cli := &recProto{}
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", port, nil)
		if err != nil {
			return err
		}
		if err := waitUntil(co, "first accepted", func() bool { return len(srvs.list) == 1 }); err != nil {
			return err
		}

		// A second client, connected by the kernel but not yet accepted:
		// nothing below yields to the loop until the descriptors are gone.
		c2, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		defer unix.Close(c2)
		p, _ := strconv.Atoi(port)
		require.NoError(t, unix.Connect(c2, &unix.SockaddrInet4{Port: p, Addr: [4]byte{127, 0, 0, 1}}))
		release := exhaustFDs(t)

		if err := waitUntil(co, "EMFILE reported", func() bool { return len(*exc) > 0 }); err != nil {
			release()
			return err
		}
		// Existing connections keep working while accepting is paused.
		require.NoError(t, tr.Write([]byte("still served")))
		err = waitUntil(co, "echo while out of fds", func() bool { return cli.data.String() == "still served" })
		release()
		if err != nil {
			return err
		}
		c := (*exc)[0]
		require.ErrorIs(t, c.Err, syscall.EMFILE)
		require.NotNil(t, c.Socket, "the listening socket is named")
		_, isSock := c.Socket.(*kernel.Socket)
		require.True(t, isSock)

		if err := waitUntil(co, "second accepted after the pause", func() bool { return len(srvs.list) == 2 }); err != nil {
			return err
		}
		require.Equal(t, 1, len(srvs.list[1].madeOrder))
		tr.Close()
		return nil
	})
}

// exhaustFDs lowers RLIMIT_NOFILE to a little above the descriptors in use
// and fills the rest, so the next descriptor-creating call fails with
// EMFILE. The returned function frees them and restores the limit.
func exhaustFDs(t *testing.T) (release func()) {
	t.Helper()
	var orig unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &orig))
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	highest := 0
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > highest {
			highest = n
		}
	}
	lim := orig
	lim.Cur = uint64(highest + 16)
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &lim))
	var fds []int
	for {
		fd, err := unix.Dup(0)
		if err != nil {
			if !errors.Is(err, unix.EMFILE) {
				t.Errorf("dup: %v", err)
			}
			break
		}
		fds = append(fds, fd)
	}
	done := false
	return func() {
		if done {
			return
		}
		done = true
		for _, fd := range fds {
			unix.Close(fd)
		}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restore RLIMIT_NOFILE: %v", err)
		}
	}
}

func TestServerManyClients(t *testing.T) { forEachBackend(t, caseServerManyClients) }

// caseServerManyClients: many clients connecting at once, each with its own
// exchange, all served by one loop and all accounted for.
func caseServerManyClients(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	const n = 200
	var srvs serverProtos
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, srvs.factory(newEcho), []string{"127.0.0.1"}, "0", &kernel.ServerOptions{Backlog: 2 * n})
		if err != nil {
			return err
		}
		defer srv.Close()
		port := tcpPort(t, srv, 0)
		clients := make([]*recProto, n)
		tasks := make([]*kernel.Task[struct{}], n)
		for i := range n {
			tasks[i], err = kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
				p := &recProto{}
				clients[i] = p
				tr, _, err := kernel.CreateConnection(co, func() *recProto { return p }, "127.0.0.1", port, nil)
				if err != nil {
					return struct{}{}, err
				}
				tr.Write([]byte(fmt.Sprintf("client %d", i)))
				tr.WriteEOF()
				return struct{}{}, nil
			})
			require.NoError(t, err)
		}
		for _, task := range tasks {
			if _, err := task.Await(co); err != nil {
				return err
			}
		}
		if err := waitUntil(co, "all echoes", func() bool {
			for _, c := range clients {
				if c.lost == 0 {
					return false
				}
			}
			return true
		}); err != nil {
			return err
		}
		for i, c := range clients {
			require.Equal(t, fmt.Sprintf("client %d", i), c.data.String())
			require.Equal(t, 1, c.lost)
		}
		require.Len(t, srvs.list, n)
		srv.Close()
		return srv.WaitClosed(co)
	})
}
