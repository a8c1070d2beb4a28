package streams

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
	_ "github.com/loopkernel/loopkernel/plugins/resolver" // OpenConnection resolves localhost
)

// echoLines is a server callback that echoes lines until EOF, then closes.
func echoLines(co *kernel.Co, r *Reader, w *Writer) error {
	defer w.Close()
	for {
		line, err := r.Readline(co)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := w.Write(line); err != nil {
			return err
		}
		if err := w.Drain(co); err != nil {
			return err
		}
	}
}

// openServed starts a server running cb on loopback and opens a connection
// to it; the caller closes both (defer srv.Close(), defer w.Close()). On
// error nothing is left open.
func openServed(co *kernel.Co, cb ClientConnected) (*kernel.Server, *Reader, *Writer, error) {
	srv, err := StartServer(co, cb, testkit.Loopback, "0", nil)
	if err != nil {
		return nil, nil, nil, err
	}
	port, err := testkit.Port(srv)
	if err != nil {
		srv.Close()
		return nil, nil, nil, err
	}
	r, w, err := OpenConnection(co, testkit.Loopback, port, nil)
	if err != nil {
		srv.Close()
		return nil, nil, nil, err
	}
	return srv, r, w, nil
}

func TestEchoTCP(t *testing.T) {
	l := testkit.NewLoop(t, "")
	got, err := testkit.Run(t, l, func(co *kernel.Co) ([]string, error) {
		srv, r, w, err := openServed(co, echoLines)
		if err != nil {
			return nil, err
		}
		defer srv.Close()
		var out []string
		for _, msg := range []string{"hello\n", "world\n"} {
			if err := w.Write([]byte(msg)); err != nil {
				return nil, err
			}
			if err := w.Drain(co); err != nil {
				return nil, err
			}
			line, err := r.Readline(co)
			if err != nil {
				return nil, err
			}
			out = append(out, string(line))
		}
		if peer, ok := w.GetExtraInfo("peername"); !ok || peer.(*net.TCPAddr).Port == 0 {
			return nil, errors.New("no peername")
		}
		assert.True(t, w.CanWriteEOF())
		if err := w.WriteEOF(); err != nil {
			return nil, err
		}
		// The server sees EOF, stops echoing and closes: we see EOF too.
		if _, err := r.Readline(co); err != io.EOF {
			return nil, errors.New("want EOF after the server closed")
		}
		w.Close()
		assert.True(t, w.IsClosing())
		return out, w.WaitClosed(co)
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"hello\n", "world\n"}, got)
}

func TestEchoBulkWithBackPressure(t *testing.T) {
	l := testkit.NewLoop(t, "")
	// 4 MiB of lines: the writer must drain many times and the server's
	// reader (limit 1 KiB) pauses its transport again and again.
	var payload bytes.Buffer
	line := make([]byte, 511)
	for payload.Len() < 4<<20 {
		rand.Read(line)
		for i := range line {
			if line[i] == '\n' {
				line[i] = 'x'
			}
		}
		payload.Write(line)
		payload.WriteByte('\n')
	}
	data := payload.Bytes()
	got, err := testkit.Run(t, l, func(co *kernel.Co) ([]byte, error) {
		srv, err := StartServer(co, echoLines, "127.0.0.1", "0", &ServerOptions{Limit: 1024})
		if err != nil {
			return nil, err
		}
		defer srv.Close()
		port, err := testkit.Port(srv)
		if err != nil {
			return nil, err
		}
		r, w, err := OpenConnection(co, "localhost", port, &ConnOptions{Limit: 1024})
		if err != nil {
			return nil, err
		}
		defer w.Close()
		reader, _ := kernel.CreateTask(co.Loop(), func(co *kernel.Co) ([]byte, error) { return r.Read(co, -1) })
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 64<<10)
			if err := w.Write(rest[:n]); err != nil {
				return nil, err
			}
			rest = rest[n:]
			if err := w.Drain(co); err != nil {
				return nil, err
			}
		}
		if err := w.WriteEOF(); err != nil {
			return nil, err
		}
		return reader.Await(co)
	})
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, got), "echoed %d of %d bytes", len(got), len(data))
}

func TestEchoUnix(t *testing.T) {
	l := testkit.NewLoop(t, "")
	path := filepath.Join(t.TempDir(), "echo.sock")
	got, err := testkit.Run(t, l, func(co *kernel.Co) (string, error) {
		srv, err := StartUnixServer(co, echoLines, path, nil)
		if err != nil {
			return "", err
		}
		defer srv.Close()
		r, w, err := OpenUnixConnection(co, path, nil)
		if err != nil {
			return "", err
		}
		defer w.Close()
		if err := w.Writelines([][]byte{[]byte("un"), []byte("ix\n")}); err != nil {
			return "", err
		}
		b, err := r.Readuntil(co, []byte("\n"))
		return string(b), err
	})
	require.NoError(t, err)
	assert.Equal(t, "unix\n", got)
}

func TestClientCallbackErrorReported(t *testing.T) {
	l := testkit.NewLoop(t, "")
	boom := errors.New("handler failed")
	reported := make(chan error, 1)
	l.SetExceptionHandler(func(_ *kernel.Loop, c kernel.ErrorContext) { reported <- c.Err })
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		srv, r, w, err := openServed(co, func(co *kernel.Co, r *Reader, w *Writer) error {
			if _, err := r.Readline(co); err != nil {
				return err
			}
			return boom
		})
		if err != nil {
			return struct{}{}, err
		}
		defer srv.Close()
		defer w.Close()
		w.Write([]byte("go\n"))
		// The failed handler's connection is closed: we read EOF.
		if _, err := r.Read(co, 1); err != io.EOF {
			return struct{}{}, errors.New("want EOF from the closed connection")
		}
		return struct{}{}, nil
	})
	require.NoError(t, err)
	select {
	case e := <-reported:
		assert.ErrorIs(t, e, boom)
	default:
		t.Fatal("the handler's error did not reach the exception handler")
	}
}

func TestOpenConnectionErrors(t *testing.T) {
	l := testkit.NewLoop(t, "")
	_, err := testkit.Run(t, l, func(co *kernel.Co) (*Reader, error) {
		r, _, err := OpenConnection(co, "no-such-host.invalid", "1", nil)
		return r, err
	})
	var de *net.DNSError
	assert.ErrorAs(t, err, &de)

	_, err = testkit.Run(t, l, func(co *kernel.Co) (*kernel.Server, error) { return StartServer(co, nil, "127.0.0.1", "0", nil) })
	assert.ErrorIs(t, err, kernel.ErrInvalidArgument)
}

func TestDrainAfterConnectionLost(t *testing.T) {
	l := testkit.NewLoop(t, "")
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		srv, r, w, err := openServed(co, func(co *kernel.Co, r *Reader, w *Writer) error {
			w.Transport().Abort()
			return nil
		})
		if err != nil {
			return struct{}{}, err
		}
		defer srv.Close()
		if _, err := r.Read(co, -1); err != nil {
			return struct{}{}, err
		}
		w.Close()
		return struct{}{}, w.Drain(co)
	})
	require.Error(t, err, "drain on a lost connection fails")
}
