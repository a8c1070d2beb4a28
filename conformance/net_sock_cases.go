package conformance

import (
	"bytes"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/sdk"
)

// The sock_* operations: coroutines that wait on the loop for a socket to
// become readable or writable, then do one system call.
var netSockCases = []ncase{
	{name: "net/sock/recv-waits-for-data", run: nSockRecvWaits},
	{name: "net/sock/tcp-round-trip", run: nSockTCPRoundTrip},
	{name: "net/sock/connect-refused", run: nSockConnectRefused},
	{name: "net/sock/unix-connect-accept", run: nSockUnixConnectAccept},
	{name: "net/sock/datagram", run: nSockDatagram},
	{name: "net/sock/blocking-socket-rejected", run: nSockBlockingRejected},
	{name: "net/sock/cancel-removes-watch", run: nSockCancelRemovesWatch},
	{name: "net/sock/busy-descriptor", op: sdk.CapWatch, run: nSockBusyDescriptor},
}

// nSockRecvWaits: SockRecv on a socket with nothing to read waits for
// data; at EOF it returns no bytes and no error.
func nSockRecvWaits(n *nt) {
	l := n.newLoop()
	a, b := testkit.SocketPair(n, unix.SOCK_STREAM)
	got, err := runT(n, l, "recv waits for data", func(co *kernel.Co) ([]byte, error) {
		// The receiver starts first and finds nothing: it must wait.
		recv, _ := kernel.CreateTask(l, func(co *kernel.Co) ([]byte, error) { return kernel.SockRecv(co, a, 100) })
		if err := co.Yield(); err != nil {
			return nil, err
		}
		if recv.Done() {
			return nil, fmt.Errorf("rule: SockRecv waits while there is nothing to read: it finished at once")
		}
		if err := kernel.SockSendall(co, b, []byte("hello")); err != nil {
			return nil, err
		}
		return recv.Await(co)
	})
	require.NoError(n, err)
	assert.Equal(n, "hello", string(got), "rule: SockRecv returns what the peer sent")

	require.NoError(n, b.Close())
	got, err = runT(n, l, "recv at EOF", func(co *kernel.Co) ([]byte, error) { return kernel.SockRecv(co, a, 10) })
	require.NoError(n, err, "rule: SockRecv at EOF returns no error")
	assert.Empty(n, got, "rule: SockRecv at EOF returns no bytes")
}

// nSockTCPRoundTrip: 8 MiB through SockSendall to SockAccept's connection
// and SockRecvInto, by address and by name; the transfer fills the socket
// buffers, so both sides wait on the selector many times.
func nSockTCPRoundTrip(n *nt) {
	l := n.newLoop()
	ln, port := n.tcpListener()
	payload := pattern(8 << 20)
	for _, host := range []string{"127.0.0.1", "localhost"} {
		received, err := runT(n, l, "sock_* TCP round trip via "+host, func(co *kernel.Co) ([]byte, error) {
			server, _ := kernel.CreateTask(l, func(co *kernel.Co) ([]byte, error) {
				conn, peer, err := kernel.SockAccept(co, ln)
				if err != nil {
					return nil, err
				}
				defer conn.Close()
				if !peer.(*net.TCPAddr).IP.IsLoopback() {
					return nil, fmt.Errorf("rule: SockAccept returns the peer's address: got %v", peer)
				}
				var out bytes.Buffer
				buf := make([]byte, 64<<10)
				for {
					k, err := kernel.SockRecvInto(co, conn, buf)
					if err != nil {
						return nil, err
					}
					if k == 0 {
						return out.Bytes(), nil
					}
					out.Write(buf[:k])
				}
			})
			c, err := kernel.NewSocket(unix.AF_INET, unix.SOCK_STREAM, 0)
			if err != nil {
				return nil, err
			}
			defer c.Close()
			if err := kernel.SockConnect(co, c, net.JoinHostPort(host, strconv.Itoa(port))); err != nil {
				return nil, err
			}
			if err := kernel.SockSendall(co, c, payload); err != nil {
				return nil, err
			}
			c.Close()
			return server.Await(co)
		})
		require.NoError(n, err, "rule: connect, accept, sendall and recv_into succeed (%s)", host)
		require.True(n, bytes.Equal(payload, received), "rule: every byte arrives in order (%s): got %d bytes, want %d", host, len(received), len(payload))
	}
}

// nSockConnectRefused: SockConnect to a closed port fails with
// ECONNREFUSED inside a *net.OpError.
func nSockConnectRefused(n *nt) {
	l := n.newLoop()
	port := n.closedTCPPort()
	_, err := runT(n, l, "connect refused", func(co *kernel.Co) (struct{}, error) {
		c, err := kernel.NewSocket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return struct{}{}, err
		}
		defer c.Close()
		return struct{}{}, kernel.SockConnect(co, c, "127.0.0.1:"+strconv.Itoa(port))
	})
	require.ErrorIs(n, err, unix.ECONNREFUSED, "rule: SockConnect to a closed port fails with ECONNREFUSED")
	var oe *net.OpError
	require.ErrorAs(n, err, &oe, "rule: the error is a *net.OpError")
}

// nSockUnixConnectAccept: SockConnect and SockAccept on a Unix path.
func nSockUnixConnectAccept(n *nt) {
	l := n.newLoop()
	path := filepath.Join(n.tempDir(), "s.sock")
	ln, err := kernel.NewSocket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	n.fixture("socket", err)
	n.Cleanup(func() { ln.Close() })
	n.fixture("bind", ln.Bind(unixAddr(path)))
	n.fixture("listen", ln.Listen(0))
	got, err := runT(n, l, "unix connect and accept", func(co *kernel.Co) ([]byte, error) {
		accepted := false
		srv, _ := kernel.CreateTask(l, func(co *kernel.Co) ([]byte, error) {
			conn, _, err := kernel.SockAccept(co, ln)
			if err != nil {
				return nil, err
			}
			accepted = true
			defer conn.Close()
			return kernel.SockRecv(co, conn, 10)
		})
		// The server starts first: SockAccept, then SockRecv, each find
		// nothing and must wait for the loop to report readiness.
		if err := co.Yield(); err != nil {
			return nil, err
		}
		if srv.Done() || accepted {
			return nil, fmt.Errorf("rule: SockAccept waits while nobody connects: it returned at once")
		}
		c, err := kernel.NewSocket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		if err := kernel.SockConnect(co, c, path); err != nil {
			return nil, err
		}
		for i := 0; !accepted && i < 10000; i++ {
			if err := co.Sleep(time.Millisecond); err != nil {
				return nil, err
			}
		}
		if !accepted || srv.Done() {
			return nil, fmt.Errorf("rule: a waiting SockAccept returns once a client connects (accepted %v), then SockRecv waits for data", accepted)
		}
		if err := kernel.SockSendall(co, c, []byte("unix")); err != nil {
			return nil, err
		}
		return srv.Await(co)
	})
	require.NoError(n, err, "rule: SockConnect/SockAccept work on Unix paths")
	require.Equal(n, "unix", string(got))
}

// nSockDatagram: SockSendto and SockRecvfrom carry a datagram and its
// source; a datagram longer than the buffer is truncated to it.
func nSockDatagram(n *nt) {
	l := n.newLoop()
	a, err := kernel.NewSocket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	n.fixture("socket", err)
	n.Cleanup(func() { a.Close() })
	b, err := kernel.NewSocket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	n.fixture("socket", err)
	n.Cleanup(func() { b.Close() })
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	n.fixture("bind", a.Bind(lo))
	n.fixture("bind", b.Bind(lo))
	type dg struct {
		data []byte
		from net.Addr
		sent int
	}
	got, err := runT(n, l, "sendto and recvfrom", func(co *kernel.Co) (dg, error) {
		recv, _ := kernel.CreateTask(l, func(co *kernel.Co) (dg, error) {
			d, from, err := kernel.SockRecvfrom(co, b, 100)
			return dg{data: d, from: from}, err
		})
		if err := co.Yield(); err != nil {
			return dg{}, err
		}
		if recv.Done() {
			return dg{}, fmt.Errorf("rule: SockRecvfrom waits while no datagram has arrived: it returned at once")
		}
		k, err := kernel.SockSendto(co, a, []byte("ping"), b.LocalAddr())
		if err != nil {
			return dg{}, err
		}
		d, err := recv.Await(co)
		d.sent = k
		return d, err
	})
	require.NoError(n, err)
	require.Equal(n, 4, got.sent, "rule: SockSendto reports the bytes sent")
	require.Equal(n, "ping", string(got.data), "rule: SockRecvfrom returns the datagram")
	require.Equal(n, a.LocalAddr().String(), got.from.String(), "rule: SockRecvfrom returns the sender's address")

	k, err := runT(n, l, "recvfrom_into truncates", func(co *kernel.Co) (int, error) {
		if _, err := kernel.SockSendto(co, a, []byte("0123456789"), b.LocalAddr()); err != nil {
			return 0, err
		}
		buf := make([]byte, 4)
		k, _, err := kernel.SockRecvfromInto(co, b, buf)
		return k, err
	})
	require.NoError(n, err)
	require.Equal(n, 4, k, "rule: a datagram longer than the buffer is truncated to it")
}

// nSockBlockingRejected: every sock_* operation refuses a blocking socket
// (it would block the loop) and a closed one.
func nSockBlockingRejected(n *nt) {
	l := n.newLoop()
	a, b := testkit.SocketPair(n, unix.SOCK_STREAM)
	require.NoError(n, a.SetBlocking(true))
	f := n.sendfileSource([]byte("x"))
	for _, op := range []struct {
		name string
		call func(co *kernel.Co) error
	}{
		{"SockRecv", func(co *kernel.Co) error { _, err := kernel.SockRecv(co, a, 1); return err }},
		{"SockRecvInto", func(co *kernel.Co) error { _, err := kernel.SockRecvInto(co, a, make([]byte, 1)); return err }},
		{"SockSendall", func(co *kernel.Co) error { return kernel.SockSendall(co, a, []byte("x")) }},
		{"SockConnect", func(co *kernel.Co) error { return kernel.SockConnect(co, a, "x") }},
		{"SockAccept", func(co *kernel.Co) error { _, _, err := kernel.SockAccept(co, a); return err }},
		{"SockSendfile", func(co *kernel.Co) error { _, err := kernel.SockSendfile(co, a, f, 0, 0, true); return err }},
	} {
		_, err := runT(n, l, op.name+" on a blocking socket", func(co *kernel.Co) (struct{}, error) { return struct{}{}, op.call(co) })
		require.ErrorIs(n, err, kernel.ErrBlockingSocket, "rule: %s refuses a blocking socket", op.name)
	}
	require.NoError(n, b.Close())
	_, err := runT(n, l, "recv on a closed socket", func(co *kernel.Co) ([]byte, error) { return kernel.SockRecv(co, b, 1) })
	require.ErrorIs(n, err, kernel.ErrSocketClosed, "rule: sock_* on a closed socket fails with ErrSocketClosed")
}

// nSockCancelRemovesWatch: cancelling a waiting SockRecv removes its
// reader, leaving the descriptor free for the next operation.
func nSockCancelRemovesWatch(n *nt) {
	l := n.newLoop()
	a, b := testkit.SocketPair(n, unix.SOCK_STREAM)
	_, err := runT(n, l, "cancel a waiting recv", func(co *kernel.Co) (struct{}, error) {
		recv, _ := kernel.CreateTask(l, func(co *kernel.Co) ([]byte, error) { return kernel.SockRecv(co, a, 10) })
		if err := co.Yield(); err != nil {
			return struct{}{}, err
		}
		recv.Cancel()
		_, err := recv.Await(co)
		require.ErrorIs(n, err, kernel.ErrCancelled, "rule: a cancelled SockRecv returns the cancellation")
		return struct{}{}, nil
	})
	require.NoError(n, err)
	removed, err := l.RemoveReader(a.Fd())
	require.NoError(n, err)
	require.False(n, removed, "rule: a cancelled SockRecv leaves no reader registered")

	got, err := runT(n, l, "recv after a cancelled recv", func(co *kernel.Co) ([]byte, error) {
		if err := kernel.SockSendall(co, b, []byte("after")); err != nil {
			return nil, err
		}
		return kernel.SockRecv(co, a, 10)
	})
	require.NoError(n, err, "rule: the descriptor is free for the next operation")
	require.Equal(n, "after", string(got))
}

// nSockBusyDescriptor: a sock_* operation on a descriptor that already has
// a reader fails with ErrFDBusy and leaves that reader alone.
func nSockBusyDescriptor(n *nt) {
	l := n.newLoop()
	a, _ := testkit.SocketPair(n, unix.SOCK_STREAM)
	require.NoError(n, l.AddReader(a.Fd(), func() {}))
	_, err := runT(n, l, "recv on a watched descriptor", func(co *kernel.Co) ([]byte, error) { return kernel.SockRecv(co, a, 10) })
	require.ErrorIs(n, err, kernel.ErrFDBusy, "rule: sock_* on a descriptor with a reader fails with ErrFDBusy")
	removed, err := l.RemoveReader(a.Fd())
	require.NoError(n, err)
	require.True(n, removed, "rule: the failed operation leaves the other reader alone")
}
