package kernel_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
)

// rsPair returns a connected pair of non-blocking Unix stream sockets.
func rsPair(t testing.TB, sotype int) (*kernel.Socket, *kernel.Socket) {
	fds, err := unix.Socketpair(unix.AF_UNIX, sotype|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	a, err := kernel.SocketFromFD(fds[0])
	require.NoError(t, err)
	b, err := kernel.SocketFromFD(fds[1])
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// rsListener is a TCP socket listening on 127.0.0.1 and its port.
func rsListener(t testing.TB) (*kernel.Socket, int) {
	s, err := kernel.NewSocket(unix.AF_INET, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	require.NoError(t, s.Bind(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}))
	require.NoError(t, s.Listen(0))
	return s, s.LocalAddr().(*net.TCPAddr).Port
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func TestSockRecvWaitsForData(t *testing.T) {
	l := rsLoop(t)
	a, b := rsPair(t, unix.SOCK_STREAM)
	got, err := rsRun(t, l, func(co *kernel.Co) ([]byte, error) {
		// The receiver starts first and finds nothing: it must wait.
		recv, _ := kernel.CreateTask(l, func(co *kernel.Co) ([]byte, error) { return kernel.SockRecv(co, a, 100) })
		if err := co.Yield(); err != nil {
			return nil, err
		}
		if recv.Done() {
			return nil, fmt.Errorf("recv finished without data")
		}
		if err := kernel.SockSendall(co, b, []byte("hello")); err != nil {
			return nil, err
		}
		return recv.Await(co)
	})
	require.NoError(t, err)
	assert.Equal(t, "hello", string(got))

	// EOF: the peer closes, recv returns no bytes and no error.
	require.NoError(t, b.Close())
	got, err = rsRun(t, l, func(co *kernel.Co) ([]byte, error) { return kernel.SockRecv(co, a, 10) })
	require.NoError(t, err)
	assert.Empty(t, got)
}

func TestSockTCPRoundTrip(t *testing.T) {
	l := rsLoop(t)
	ln, port := rsListener(t)
	// Big enough to fill the socket buffers, so sendall has to wait for
	// writability and the receiver for readability many times.
	payload := randBytes(t, 8<<20)
	for _, host := range []string{"127.0.0.1", "localhost"} {
		t.Run(host, func(t *testing.T) {
			received, err := rsRun(t, l, func(co *kernel.Co) ([]byte, error) {
				server, _ := kernel.CreateTask(l, func(co *kernel.Co) ([]byte, error) {
					conn, peer, err := kernel.SockAccept(co, ln)
					if err != nil {
						return nil, err
					}
					defer conn.Close()
					if !peer.(*net.TCPAddr).IP.IsLoopback() {
						return nil, fmt.Errorf("peer %v", peer)
					}
					var out bytes.Buffer
					buf := make([]byte, 64<<10)
					for {
						n, err := kernel.SockRecvInto(co, conn, buf)
						if err != nil {
							return nil, err
						}
						if n == 0 {
							return out.Bytes(), nil
						}
						out.Write(buf[:n])
					}
				})
				c, err := kernel.NewSocket(unix.AF_INET, unix.SOCK_STREAM, 0)
				if err != nil {
					return nil, err
				}
				if err := kernel.SockConnect(co, c, net.JoinHostPort(host, strconv.Itoa(port))); err != nil {
					c.Close()
					return nil, err
				}
				if err := kernel.SockSendall(co, c, payload); err != nil {
					c.Close()
					return nil, err
				}
				c.Close()
				return server.Await(co)
			})
			require.NoError(t, err)
			assert.True(t, bytes.Equal(payload, received), "got %d bytes, want %d", len(received), len(payload))
		})
	}
}

func TestSockConnectRefused(t *testing.T) {
	l := rsLoop(t)
	ln, port := rsListener(t)
	require.NoError(t, ln.Close()) // nothing listens on port now
	_, err := rsRun(t, l, func(co *kernel.Co) (struct{}, error) {
		c, err := kernel.NewSocket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return struct{}{}, err
		}
		defer c.Close()
		return struct{}{}, kernel.SockConnect(co, c, "127.0.0.1:"+strconv.Itoa(port))
	})
	assert.ErrorIs(t, err, unix.ECONNREFUSED)
	var oe *net.OpError
	assert.ErrorAs(t, err, &oe)
}

func TestSockUnixConnectAccept(t *testing.T) {
	l := rsLoop(t)
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := kernel.NewSocket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	defer ln.Close()
	require.NoError(t, ln.Bind(&net.UnixAddr{Name: path, Net: "unix"}))
	require.NoError(t, ln.Listen(0))
	got, err := rsRun(t, l, func(co *kernel.Co) ([]byte, error) {
		srv, _ := kernel.CreateTask(l, func(co *kernel.Co) ([]byte, error) {
			conn, _, err := kernel.SockAccept(co, ln)
			if err != nil {
				return nil, err
			}
			defer conn.Close()
			return kernel.SockRecv(co, conn, 10)
		})
		c, err := kernel.NewSocket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		if err := kernel.SockConnect(co, c, path); err != nil {
			return nil, err
		}
		if err := kernel.SockSendall(co, c, []byte("unix")); err != nil {
			return nil, err
		}
		return srv.Await(co)
	})
	require.NoError(t, err)
	assert.Equal(t, "unix", string(got))
}

func TestSockDatagram(t *testing.T) {
	l := rsLoop(t)
	a, err := kernel.NewSocket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	require.NoError(t, err)
	defer a.Close()
	b, err := kernel.NewSocket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	require.NoError(t, err)
	defer b.Close()
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	require.NoError(t, a.Bind(lo))
	require.NoError(t, b.Bind(lo))
	type dg struct {
		data []byte
		from net.Addr
		n    int
	}
	got, err := rsRun(t, l, func(co *kernel.Co) (dg, error) {
		recv, _ := kernel.CreateTask(l, func(co *kernel.Co) (dg, error) {
			d, from, err := kernel.SockRecvfrom(co, b, 100)
			return dg{data: d, from: from}, err
		})
		n, err := kernel.SockSendto(co, a, []byte("ping"), b.LocalAddr())
		if err != nil {
			return dg{}, err
		}
		d, err := recv.Await(co)
		d.n = n
		return d, err
	})
	require.NoError(t, err)
	assert.Equal(t, 4, got.n)
	assert.Equal(t, "ping", string(got.data))
	assert.Equal(t, a.LocalAddr().String(), got.from.String())

	// A datagram longer than the buffer is truncated to it.
	n, err := rsRun(t, l, func(co *kernel.Co) (int, error) {
		if _, err := kernel.SockSendto(co, a, []byte("0123456789"), b.LocalAddr()); err != nil {
			return 0, err
		}
		buf := make([]byte, 4)
		n, _, err := kernel.SockRecvfromInto(co, b, buf)
		return n, err
	})
	require.NoError(t, err)
	assert.Equal(t, 4, n)
}

func TestSockBlockingRejected(t *testing.T) {
	l := rsLoop(t)
	a, b := rsPair(t, unix.SOCK_STREAM)
	require.NoError(t, a.SetBlocking(true))
	_, err := rsRun(t, l, func(co *kernel.Co) ([]byte, error) { return kernel.SockRecv(co, a, 1) })
	assert.ErrorIs(t, err, kernel.ErrBlockingSocket)
	_, err = rsRun(t, l, func(co *kernel.Co) (struct{}, error) { return struct{}{}, kernel.SockSendall(co, a, []byte("x")) })
	assert.ErrorIs(t, err, kernel.ErrBlockingSocket)
	_, err = rsRun(t, l, func(co *kernel.Co) (struct{}, error) { return struct{}{}, kernel.SockConnect(co, a, "x") })
	assert.ErrorIs(t, err, kernel.ErrBlockingSocket)
	_, err = rsRun(t, l, func(co *kernel.Co) (*kernel.Socket, error) {
		s, _, err := kernel.SockAccept(co, a)
		return s, err
	})
	assert.ErrorIs(t, err, kernel.ErrBlockingSocket)

	require.NoError(t, b.Close())
	_, err = rsRun(t, l, func(co *kernel.Co) ([]byte, error) { return kernel.SockRecv(co, b, 1) })
	assert.ErrorIs(t, err, kernel.ErrSocketClosed)
}

func TestSockCancelRemovesWatch(t *testing.T) {
	l := rsLoop(t)
	a, b := rsPair(t, unix.SOCK_STREAM)
	_, err := rsRun(t, l, func(co *kernel.Co) (struct{}, error) {
		recv, _ := kernel.CreateTask(l, func(co *kernel.Co) ([]byte, error) { return kernel.SockRecv(co, a, 10) })
		if err := co.Yield(); err != nil {
			return struct{}{}, err
		}
		recv.Cancel()
		if _, err := recv.Await(co); !assert.ErrorIs(t, err, kernel.ErrCancelled) {
			return struct{}{}, nil
		}
		return struct{}{}, nil
	})
	require.NoError(t, err)
	removed, err := l.RemoveReader(a.Fd())
	require.NoError(t, err)
	assert.False(t, removed, "the cancelled recv left its reader registered")

	// The descriptor is free for the next operation.
	got, err := rsRun(t, l, func(co *kernel.Co) ([]byte, error) {
		if err := kernel.SockSendall(co, b, []byte("after")); err != nil {
			return nil, err
		}
		return kernel.SockRecv(co, a, 10)
	})
	require.NoError(t, err)
	assert.Equal(t, "after", string(got))
}

func TestSockBusyDescriptor(t *testing.T) {
	l := rsLoop(t)
	a, _ := rsPair(t, unix.SOCK_STREAM)
	require.NoError(t, l.AddReader(a.Fd(), func() {}))
	_, err := rsRun(t, l, func(co *kernel.Co) ([]byte, error) { return kernel.SockRecv(co, a, 10) })
	assert.ErrorIs(t, err, kernel.ErrFDBusy)
	removed, err := l.RemoveReader(a.Fd())
	require.NoError(t, err)
	assert.True(t, removed, "the failed recv must leave the other reader alone")
}
