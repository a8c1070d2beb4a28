package gonet_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/gonet"
	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
)

// onLoop runs body as a coroutine on a new loop and fails t with its error.
func onLoop(t *testing.T, body func(co *kernel.Co) error) {
	t.Helper()
	l := testkit.NewLoop(t, "")
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) { return struct{}{}, body(co) })
	require.NoError(t, err)
}

// onPair runs body off the loop, as net code runs, with both ends of a
// connection accepted by a gonet listener (all closed afterwards; a body
// may close them itself).
func onPair(t *testing.T, body func(client, server net.Conn, ln *gonet.Listener) error) {
	t.Helper()
	onLoop(t, func(co *kernel.Co) error {
		client, server, ln, err := pair(co)
		if err != nil {
			return err
		}
		defer ln.Close()
		defer client.Close()
		defer server.Close()
		_, err = testkit.OffLoop(co, func() (struct{}, error) { return struct{}{}, body(client, server, ln) })
		return err
	})
}

// pair listens on loopback, dials it, and returns both ends as net.Conns.
func pair(co *kernel.Co) (client, server net.Conn, ln *gonet.Listener, err error) {
	ln, err = gonet.Listen(co, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, nil, err
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	client, err = gonet.Dial(co, "tcp", ln.Addr().String())
	if err != nil {
		ln.Close()
		return nil, nil, nil, err
	}
	server, err = testkit.OffLoop(co, func() (net.Conn, error) {
		c, ok := <-accepted
		if !ok {
			return nil, errors.New("accept failed")
		}
		return c, nil
	})
	return client, server, ln, err
}

func TestEchoOfMoreThanTheBuffersHold(t *testing.T) {
	onPair(t, func(client, server net.Conn, _ *gonet.Listener) error {
		go func() {
			io.Copy(server, server) // echo until the client's FIN
			server.(*gonet.Conn).CloseWrite()
			server.Close()
		}()
		want := make([]byte, 4<<20) // far over the read and write bounds
		rand.Read(want)
		go func() {
			client.Write(want)
			client.(*gonet.Conn).CloseWrite()
		}()
		got, err := io.ReadAll(client)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			return errors.New("echoed bytes differ")
		}
		return nil
	})
}

func TestReadDeadline(t *testing.T) {
	onPair(t, func(client, server net.Conn, _ *gonet.Listener) error {
		server.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		start := time.Now()
		_, err := server.Read(make([]byte, 8))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			return errors.New("read past its deadline did not time out: " + errString(err))
		}
		if time.Since(start) < 25*time.Millisecond {
			return errors.New("read timed out before its deadline")
		}
		// The connection is still good: a new deadline, then data.
		server.SetReadDeadline(time.Time{})
		client.Write([]byte("late"))
		b := make([]byte, 4)
		if _, err := io.ReadFull(server, b); err != nil || string(b) != "late" {
			return errors.New("read after a timeout: " + errString(err))
		}
		// A deadline in the past fails at once, even with data buffered later.
		server.SetReadDeadline(time.Now().Add(-time.Second))
		if _, err := server.Read(b); !errors.Is(err, os.ErrDeadlineExceeded) {
			return errors.New("past deadline: " + errString(err))
		}
		return nil
	})
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestWriteBlocksOnAPeerThatDoesNotReadUntilTheDeadline(t *testing.T) {
	onPair(t, func(client, _ net.Conn, _ *gonet.Listener) error {
		client.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := client.Write(make([]byte, 64<<20))
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
		assert.Less(t, n, 64<<20, "the writer was held back")
		return nil
	})
}

func TestCloseUnblocksReadAndAccept(t *testing.T) {
	onPair(t, func(client, server net.Conn, ln *gonet.Listener) error {
		readErr := make(chan error, 1)
		go func() { _, err := client.Read(make([]byte, 1)); readErr <- err }()
		acceptErr := make(chan error, 1)
		go func() { _, err := ln.Accept(); acceptErr <- err }()
		time.Sleep(20 * time.Millisecond)
		client.Close()
		ln.Close()
		assert.ErrorIs(t, <-readErr, net.ErrClosed)
		assert.ErrorIs(t, <-acceptErr, net.ErrClosed)
		assert.ErrorIs(t, client.Close(), net.ErrClosed, "a second Close")
		_, err := client.Write([]byte("x"))
		assert.ErrorIs(t, err, net.ErrClosed)
		// The peer sees the close as the end of the stream.
		_, err = server.Read(make([]byte, 1))
		assert.Equal(t, io.EOF, err)
		return nil
	})
}

func TestPeerResetIsAnErrorNotEOF(t *testing.T) {
	onLoop(t, func(co *kernel.Co) error {
		ln, err := gonet.Listen(co, "tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		_, err = testkit.OffLoop(co, func() (struct{}, error) {
			// The peer is Go's own net: SO_LINGER 0 makes its close a reset.
			peer, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				return struct{}{}, err
			}
			c, err := ln.Accept()
			if err != nil {
				return struct{}{}, err
			}
			defer c.Close()
			peer.(*net.TCPConn).SetLinger(0)
			peer.Close()
			_, err = io.ReadAll(c)
			if err == nil {
				return struct{}{}, errors.New("a reset read as a clean end of stream")
			}
			assert.ErrorIs(t, err, syscall.ECONNRESET)
			return struct{}{}, nil
		})
		return err
	})
}

func TestDialerFromAnotherGoroutine(t *testing.T) {
	onLoop(t, func(co *kernel.Co) error {
		l := co.Loop()
		ln, err := gonet.Listen(co, "tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.Write([]byte("hello"))
				c.Close()
			}
		}()
		got, err := testkit.OffLoop(co, func() (string, error) {
			c, err := gonet.Dialer{Loop: l}.DialContext(context.Background(), "tcp", ln.Addr().String())
			if err != nil {
				return "", err
			}
			defer c.Close()
			b, err := io.ReadAll(c)
			return string(b), err
		})
		assert.Equal(t, "hello", got)
		if err != nil {
			return err
		}
		// A refused dial is an error, and a cancelled one returns at once.
		_, err = testkit.OffLoop(co, func() (net.Conn, error) {
			return gonet.Dialer{Loop: l}.DialContext(context.Background(), "tcp", "127.0.0.1:1")
		})
		assert.Error(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err = testkit.OffLoop(co, func() (net.Conn, error) {
			return gonet.Dialer{Loop: l}.DialContext(ctx, "tcp", ln.Addr().String())
		})
		assert.True(t, err == nil || errors.Is(err, context.Canceled), "got %v", err)
		return nil
	})
}

func TestUnixAndBadNetworks(t *testing.T) {
	path := t.TempDir() + "/s"
	onLoop(t, func(co *kernel.Co) error {
		ln, err := gonet.Listen(co, "unix", path)
		if err != nil {
			return err
		}
		defer ln.Close()
		assert.Equal(t, path, ln.Addr().String())
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Write([]byte("unix"))
				c.Close()
			}
		}()
		c, err := gonet.Dial(co, "unix", path)
		if err != nil {
			return err
		}
		got, err := testkit.OffLoop(co, func() ([]byte, error) { defer c.Close(); return io.ReadAll(c) })
		assert.Equal(t, "unix", string(got))
		assert.NoError(t, err)

		_, err = gonet.Listen(co, "udp", "127.0.0.1:0")
		var unknown net.UnknownNetworkError
		assert.ErrorAs(t, err, &unknown)
		_, err = gonet.Dial(co, "tcp", "no-port")
		assert.Error(t, err)
		return nil
	})
}
