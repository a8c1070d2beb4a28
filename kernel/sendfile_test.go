package kernel_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
)

// sfFile is a temporary regular file holding data.
func sfFile(t *testing.T, data []byte) *os.File {
	p := filepath.Join(t.TempDir(), "payload")
	require.NoError(t, os.WriteFile(p, data, 0o600))
	f, err := os.Open(p)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

func filePos(t *testing.T, f *os.File) int64 {
	pos, err := f.Seek(0, io.SeekCurrent)
	require.NoError(t, err)
	return pos
}

// sfReadN reads exactly n bytes from s, then checks nothing more arrives
// before the peer closes.
func sfReadAll(l *kernel.Loop, co *kernel.Co, s *kernel.Socket) ([]byte, error) {
	var out bytes.Buffer
	buf := make([]byte, 128<<10)
	for {
		n, err := kernel.SockRecvInto(co, s, buf)
		if err != nil || n == 0 {
			return out.Bytes(), err
		}
		out.Write(buf[:n])
	}
}

type sfResult struct {
	sent int64
	got  []byte
	err  error
}

// sfTransfer sends file over a fresh socketpair with SockSendfile and
// returns what was sent and what the peer received.
func sfTransfer(t *testing.T, l *kernel.Loop, f *os.File, offset, count int64, fallback bool) sfResult {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	a, err := kernel.SocketFromFD(fds[0])
	require.NoError(t, err)
	b, err := kernel.SocketFromFD(fds[1])
	require.NoError(t, err)
	defer b.Close()
	res, err := rsRun(t, l, func(co *kernel.Co) (sfResult, error) {
		recv, _ := kernel.CreateTask(l, func(co *kernel.Co) ([]byte, error) { return sfReadAll(l, co, b) })
		n, serr := kernel.SockSendfile(co, a, f, offset, count, fallback)
		a.Close()
		got, err := recv.Await(co)
		return sfResult{sent: n, got: got, err: serr}, err
	})
	require.NoError(t, err)
	return res
}

func TestSockSendfile(t *testing.T) {
	data := randBytes(t, 3<<20+123)
	cases := []struct {
		name          string
		offset, count int64
		want          []byte
	}{
		{"whole file", 0, 0, data},
		{"offset", 1000, 0, data[1000:]},
		{"offset and count", 4097, 1 << 20, data[4097 : 4097+1<<20]},
		{"count past EOF", int64(len(data)) - 10, 1000, data[len(data)-10:]},
		{"offset past EOF", int64(len(data)) + 5, 0, nil},
	}
	for _, mode := range []string{"zero-copy", "fallback"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "fallback" {
				defer kernel.SetSendfileZeroCopy(false)()
			}
			l := rsLoop(t)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					f := sfFile(t, data)
					// A position elsewhere must not matter: offset rules.
					_, err := f.Seek(17, io.SeekStart)
					require.NoError(t, err)
					r := sfTransfer(t, l, f, c.offset, c.count, true)
					require.NoError(t, r.err)
					assert.Equal(t, int64(len(c.want)), r.sent)
					assert.True(t, bytes.Equal(c.want, r.got), "received %d bytes, want %d", len(r.got), len(c.want))
					if r.sent > 0 {
						assert.Equal(t, c.offset+r.sent, filePos(t, f), "file position after the last byte sent")
					} else {
						assert.Equal(t, int64(17), filePos(t, f), "nothing sent, position untouched")
					}
				})
			}
		})
	}
}

func TestSockSendfileNoFallback(t *testing.T) {
	defer kernel.SetSendfileZeroCopy(false)()
	l := rsLoop(t)
	f := sfFile(t, []byte("data"))
	r := sfTransfer(t, l, f, 0, 0, false)
	assert.ErrorIs(t, r.err, kernel.ErrSendfileNotAvailable)
	assert.Zero(t, r.sent)
	assert.Empty(t, r.got)
	assert.Zero(t, filePos(t, f))
}

func TestSockSendfilePipe(t *testing.T) {
	// sendfile(2) cannot read from a pipe: a pipe forces the fallback
	// without any switch.
	l := rsLoop(t)
	payload := randBytes(t, 600<<10)
	for _, fallback := range []bool{false, true} {
		pr, pw, err := os.Pipe()
		require.NoError(t, err)
		go func() { pw.Write(payload); pw.Close() }()
		r := sfTransfer(t, l, pr, 0, 0, fallback)
		if !fallback {
			assert.ErrorIs(t, r.err, kernel.ErrSendfileNotAvailable)
			assert.Zero(t, r.sent)
			io.Copy(io.Discard, pr)
		} else {
			require.NoError(t, r.err)
			assert.Equal(t, int64(len(payload)), r.sent)
			assert.True(t, bytes.Equal(payload, r.got))
		}
		pr.Close()
	}

	// An offset on a pipe cannot be honoured.
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	defer pr.Close()
	defer pw.Close()
	r := sfTransfer(t, l, pr, 10, 0, true)
	assert.ErrorIs(t, r.err, unix.ESPIPE)
}

func TestSockSendfileRejects(t *testing.T) {
	l := rsLoop(t)
	f := sfFile(t, []byte("x"))
	dg, err := kernel.NewSocket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	require.NoError(t, err)
	defer dg.Close()
	a, _ := rsPair(t, unix.SOCK_STREAM)
	_, err = rsRun(t, l, func(co *kernel.Co) (int64, error) { return kernel.SockSendfile(co, dg, f, 0, 0, true) })
	assert.ErrorIs(t, err, unix.EINVAL, "datagram socket")
	_, err = rsRun(t, l, func(co *kernel.Co) (int64, error) { return kernel.SockSendfile(co, a, f, -1, 0, true) })
	assert.ErrorIs(t, err, unix.EINVAL, "negative offset")
	_, err = rsRun(t, l, func(co *kernel.Co) (int64, error) { return kernel.SockSendfile(co, a, f, 0, -1, true) })
	assert.ErrorIs(t, err, unix.EINVAL, "negative count")
	require.NoError(t, a.SetBlocking(true))
	_, err = rsRun(t, l, func(co *kernel.Co) (int64, error) { return kernel.SockSendfile(co, a, f, 0, 0, true) })
	assert.ErrorIs(t, err, kernel.ErrBlockingSocket)
}

// sfPlainTransport is a Transport that does not offer Sendfile's hook.
type sfPlainTransport struct{ kernel.Transport }

func (sfPlainTransport) IsClosing() bool { return false }

func TestSendfileUnsupportedTransport(t *testing.T) {
	l := rsLoop(t)
	f := sfFile(t, []byte("x"))
	_, err := rsRun(t, l, func(co *kernel.Co) (int64, error) { return kernel.Sendfile(co, sfPlainTransport{}, f, 0, 0, true) })
	assert.ErrorIs(t, err, kernel.ErrSendfileNotAvailable)
}

// sfSink is a server protocol that collects everything until EOF.
type sfSink struct {
	l    *kernel.Loop
	got  bytes.Buffer
	done *kernel.Future[[]byte]
}

func (p *sfSink) ConnectionMade(kernel.BaseTransport) {}
func (p *sfSink) ConnectionLost(error)                {}
func (p *sfSink) DataReceived(b []byte)               { p.got.Write(b) }
func (p *sfSink) EOFReceived() bool {
	p.done.SetResult(p.got.Bytes())
	return false
}

// sfClient is a client protocol that ignores what it receives.
type sfClient struct{}

func (sfClient) ConnectionMade(kernel.BaseTransport) {}
func (sfClient) ConnectionLost(error)                {}
func (sfClient) DataReceived([]byte)                 {}
func (sfClient) EOFReceived() bool                   { return true }

// sfOverTransport writes prefix through a fresh TCP connection's transport,
// then Sendfile, then EOF, and returns what the server received.
// With wantBlocked, a Write attempted while Sendfile runs must fail.
func sfOverTransport(t *testing.T, l *kernel.Loop, prefix []byte, f *os.File, offset, count int64, fallback, wantBlocked bool) (int64, []byte, error) {
	t.Helper()
	type res struct {
		n        int64
		got      []byte
		sfErr    error
		midWrite error
	}
	r, err := rsRun(t, l, func(co *kernel.Co) (res, error) {
		sink := &sfSink{l: l, done: kernel.CreateFuture[[]byte](l)}
		srv, err := kernel.CreateServer(co, func() *sfSink { return sink }, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return res{}, err
		}
		defer srv.Close()
		port := srv.Sockets()[0].LocalAddr().String()
		_, portStr, _ := net.SplitHostPort(port)
		tr, _, err := kernel.CreateConnection(co, func() sfClient { return sfClient{} }, "127.0.0.1", portStr, nil)
		if err != nil {
			return res{}, err
		}
		defer tr.Close()
		if err := tr.Write(prefix); err != nil {
			return res{}, err
		}
		var mid error
		probe, _ := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
			mid = tr.Write([]byte("interloper"))
			return struct{}{}, nil
		})
		n, sfErr := kernel.Sendfile(co, tr, f, offset, count, fallback)
		if _, err := probe.Await(co); err != nil {
			return res{}, err
		}
		if err := tr.WriteEOF(); err != nil {
			return res{}, err
		}
		got, err := sink.done.Await(co)
		return res{n, bytes.Clone(got), sfErr, mid}, err
	})
	require.NoError(t, err)
	if wantBlocked {
		assert.Error(t, r.midWrite, "Write while the socket belongs to sendfile must fail")
	}
	if r.midWrite == nil {
		// The probe's bytes went through the transport; drop them so the
		// caller compares only the file's bytes.
		r.got = bytes.Replace(r.got, []byte("interloper"), nil, 1)
	}
	return r.n, r.got, r.sfErr
}

func TestSendfileOverTransport(t *testing.T) {
	data := randBytes(t, 2<<20+77)
	// A prefix bigger than the socket buffers, so part of it is still in
	// the transport's buffer when Sendfile starts: it must go out first.
	prefix := bytes.Repeat([]byte("P"), 3<<20)
	for _, mode := range []string{"zero-copy", "fallback"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "fallback" {
				defer kernel.SetSendfileZeroCopy(false)()
			}
			l := rsLoop(t)
			f := sfFile(t, data)
			n, got, err := sfOverTransport(t, l, prefix, f, 100, 1<<20, true, mode == "zero-copy")
			require.NoError(t, err)
			assert.Equal(t, int64(1<<20), n)
			require.Equal(t, len(prefix)+1<<20, len(got))
			assert.True(t, bytes.Equal(prefix, got[:len(prefix)]), "the buffered prefix goes out first")
			assert.True(t, bytes.Equal(data[100:100+1<<20], got[len(prefix):]))
			assert.Equal(t, int64(100+1<<20), filePos(t, f))

			if mode == "fallback" {
				f2 := sfFile(t, data)
				n, got, err := sfOverTransport(t, l, nil, f2, 0, 0, false, false)
				assert.ErrorIs(t, err, kernel.ErrSendfileNotAvailable)
				assert.Zero(t, n)
				assert.Empty(t, got)
			}
		})
	}
}

func TestSendfileClosingTransport(t *testing.T) {
	l := rsLoop(t)
	f := sfFile(t, []byte("x"))
	_, err := rsRun(t, l, func(co *kernel.Co) (int64, error) {
		srv, err := kernel.CreateServer(co, func() sfClient { return sfClient{} }, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return 0, err
		}
		defer srv.Close()
		_, port, _ := net.SplitHostPort(srv.Sockets()[0].LocalAddr().String())
		tr, _, err := kernel.CreateConnection(co, func() sfClient { return sfClient{} }, "127.0.0.1", port, nil)
		if err != nil {
			return 0, err
		}
		tr.Close()
		return kernel.Sendfile(co, tr, f, 0, 0, true)
	})
	assert.ErrorIs(t, err, kernel.ErrTransportClosed)
}

func TestSockSendfileCancelledKeepsPosition(t *testing.T) {
	for _, mode := range []string{"zero-copy", "fallback"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "fallback" {
				defer kernel.SetSendfileZeroCopy(false)()
			}
			l := rsLoop(t)
			a, b := rsPair(t, unix.SOCK_STREAM)
			f := sfFile(t, randBytes(t, 8<<20))
			// Nobody reads b: the socket fills and sendfile must wait, and
			// is cancelled while it waits.
			n, err := rsRun(t, l, func(co *kernel.Co) (int64, error) {
				send, _ := kernel.CreateTask(l, func(co *kernel.Co) (int64, error) {
					return kernel.SockSendfile(co, a, f, 0, 0, true)
				})
				// Wait until the peer's receive queue holds data and stops
				// growing: the sender is then blocked on a full socket.
				last := -1
				for i := 0; i < 2000 && !send.Done(); i++ {
					if err := co.Sleep(time.Millisecond); err != nil {
						return 0, err
					}
					inq, err := unix.IoctlGetInt(b.Fd(), unix.SIOCINQ)
					if err != nil {
						return 0, err
					}
					if inq > 0 && inq == last {
						break
					}
					last = inq
				}
				send.Cancel()
				_, err := send.Await(co)
				if !errors.Is(err, kernel.ErrCancelled) {
					return 0, fmt.Errorf("want cancelled, got %v", err)
				}
				return filePos(t, f), nil
			})
			require.NoError(t, err)
			assert.Positive(t, n, "some bytes went out before the socket filled")
			assert.Less(t, n, int64(8<<20))
			removed, err := l.RemoveWriter(a.Fd())
			require.NoError(t, err)
			assert.False(t, removed, "the cancelled sendfile left its writer registered")

			// The position is exactly what the peer can read.
			var got int64
			buf := make([]byte, 1<<20)
			for {
				k, err := unix.Read(b.Fd(), buf)
				if err == unix.EAGAIN {
					break
				}
				require.NoError(t, err)
				got += int64(k)
			}
			assert.Equal(t, n, got)
		})
	}
}
