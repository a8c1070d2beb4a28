package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/sdk"
)

// sendfile: SockSendfile on sockets and Sendfile on transports, zero-copy
// where sendfile(2) can serve the file and read-and-send otherwise, with
// offsets, counts and the fallback switch.
var netSendfileCases = []ncase{
	{name: "net/sendfile/sock/offsets-and-counts", op: sdk.CapSendfile, run: nSendfileSock},
	{name: "net/sendfile/sock/forced-fallback", run: nSendfileSockForcedFallback},
	{name: "net/sendfile/sock/pipe-source", run: nSendfilePipe},
	{name: "net/sendfile/sock/bad-arguments", run: nSendfileRejects},
	{name: "net/sendfile/sock/cancelled-keeps-position", op: sdk.CapSendfile, run: nSendfileCancelled},
	{name: "net/sendfile/transport/prefix-then-file", op: sdk.CapSendfile, run: nSendfileOverTransport},
	{name: "net/sendfile/transport/unsupported", run: nSendfileUnsupportedTransport},
	{name: "net/sendfile/transport/closing", run: nSendfileClosingTransport},
}

// sendfileSource is a regular file holding data, open for reading and
// closed when the case ends.
func (n *nt) sendfileSource(data []byte) *os.File {
	p := filepath.Join(n.tempDir(), "payload")
	n.fixture("write payload", os.WriteFile(p, data, 0o600))
	f, err := os.Open(p)
	n.fixture("open payload", err)
	n.Cleanup(func() { f.Close() })
	return f
}

func (n *nt) filePos(f *os.File) int64 {
	pos, err := f.Seek(0, io.SeekCurrent)
	n.fixture("seek", err)
	return pos
}

type sfResult struct {
	sent int64
	got  []byte
	err  error
}

// sfTransfer sends file over a fresh socketpair with SockSendfile and
// returns what was sent and what the peer received.
func (n *nt) sfTransfer(l *kernel.Loop, f *os.File, offset, count int64, fallback bool) sfResult {
	a, b := testkit.SocketPair(n, unix.SOCK_STREAM)
	res, err := runT(n, l, "sock_sendfile", func(co *kernel.Co) (sfResult, error) {
		recv, _ := kernel.CreateTask(l, func(co *kernel.Co) ([]byte, error) {
			var out bytes.Buffer
			buf := make([]byte, 128<<10)
			for {
				k, err := kernel.SockRecvInto(co, b, buf)
				if err != nil || k == 0 {
					return out.Bytes(), err
				}
				out.Write(buf[:k])
			}
		})
		k, serr := kernel.SockSendfile(co, a, f, offset, count, fallback)
		a.Close()
		got, err := recv.Await(co)
		return sfResult{sent: k, got: got, err: serr}, err
	})
	require.NoError(n, err, "rule: the receiving side reads until EOF")
	return res
}

// sendfileTable checks SockSendfile over a table of offsets and counts,
// with the fallback switch set as given.
func (n *nt) sendfileTable(l *kernel.Loop, mode string, fallback bool) {
	data := pattern(3<<20 + 123)
	size := int64(len(data))
	for _, c := range []struct {
		name          string
		offset, count int64
		want          []byte
	}{
		{"whole file", 0, 0, data},
		{"offset", 1000, 0, data[1000:]},
		{"offset and count", 4097, 1 << 20, data[4097 : 4097+1<<20]},
		{"count past EOF", size - 10, 1000, data[size-10:]},
		{"offset past EOF", size + 5, 0, nil},
	} {
		what := fmt.Sprintf("%s, fallback=%v, %s", mode, fallback, c.name)
		f := n.sendfileSource(data)
		// A position elsewhere must not matter: offset rules.
		_, err := f.Seek(17, io.SeekStart)
		n.fixture("seek", err)
		r := n.sfTransfer(l, f, c.offset, c.count, fallback)
		require.NoError(n, r.err, "rule: SockSendfile succeeds (%s)", what)
		assert.Equal(n, int64(len(c.want)), r.sent, "rule: SockSendfile returns the bytes sent (%s)", what)
		require.True(n, bytes.Equal(c.want, r.got), "rule: the peer receives exactly the file's bytes from offset, at most count (%s): got %d bytes, want %d", what, len(r.got), len(c.want))
		if r.sent > 0 {
			assert.Equal(n, c.offset+r.sent, n.filePos(f), "rule: the file position ends after the last byte sent (%s)", what)
		} else {
			assert.Equal(n, int64(17), n.filePos(f), "rule: nothing sent leaves the position untouched (%s)", what)
		}
	}
}

// nSendfileSock: zero-copy SockSendfile from a regular file, with offsets
// and counts; the fallback switch must not matter when zero-copy works.
func nSendfileSock(n *nt) {
	l := n.newLoop()
	n.sendfileTable(l, "zero-copy", true)
	n.sendfileTable(l, "zero-copy", false)
}

// nSendfileSockForcedFallback: with zero-copy off, fallback=true reads and
// sends the same bytes with the same offsets, counts and final position;
// fallback=false fails with ErrSendfileNotAvailable having sent nothing.
func nSendfileSockForcedFallback(n *nt) {
	l := n.newLoop(sdk.CapSendfile)
	n.sendfileTable(l, "read-and-send", true)
	f := n.sendfileSource([]byte("data"))
	r := n.sfTransfer(l, f, 0, 0, false)
	require.ErrorIs(n, r.err, kernel.ErrSendfileNotAvailable, "rule: without zero-copy and without fallback, SockSendfile fails with ErrSendfileNotAvailable")
	require.Zero(n, r.sent, "rule: a refused sendfile sends nothing")
	require.Empty(n, r.got)
	require.Zero(n, n.filePos(f), "rule: a refused sendfile leaves the position untouched")
}

// nSendfilePipe: sendfile(2) cannot read from a pipe, so a pipe forces the
// fallback: with it the bytes arrive (all, or count of them), without it
// ErrSendfileNotAvailable; an offset on a pipe cannot be honoured.
func nSendfilePipe(n *nt) {
	l := n.newLoop()
	payload := pattern(600 << 10)
	for _, c := range []struct {
		fallback bool
		count    int64
	}{{false, 0}, {true, 0}, {true, 1000}} {
		pr, pw, err := os.Pipe()
		n.fixture("pipe", err)
		go func() { pw.Write(payload); pw.Close() }()
		r := n.sfTransfer(l, pr, 0, c.count, c.fallback)
		switch {
		case !c.fallback:
			require.ErrorIs(n, r.err, kernel.ErrSendfileNotAvailable, "rule: a pipe without fallback fails with ErrSendfileNotAvailable")
			require.Zero(n, r.sent, "rule: a refused sendfile sends nothing")
		case c.count > 0:
			require.NoError(n, r.err)
			require.Equal(n, c.count, r.sent, "rule: the fallback stops at count")
			require.True(n, bytes.Equal(payload[:c.count], r.got), "rule: the fallback sends the first count bytes of a pipe")
		default:
			require.NoError(n, r.err, "rule: a pipe with fallback is read and sent")
			require.Equal(n, int64(len(payload)), r.sent)
			require.True(n, bytes.Equal(payload, r.got), "rule: the fallback sends every byte of a pipe, in order")
		}
		io.Copy(io.Discard, pr) // unblock the writer
		pr.Close()
	}

	pr, pw, err := os.Pipe()
	n.fixture("pipe", err)
	defer pr.Close()
	defer pw.Close()
	r := n.sfTransfer(l, pr, 10, 0, true)
	require.ErrorIs(n, r.err, unix.ESPIPE, "rule: an offset on a pipe fails with ESPIPE")
}

// nSendfileRejects: datagram sockets and negative offsets or counts are
// refused with EINVAL.
func nSendfileRejects(n *nt) {
	l := n.newLoop()
	f := n.sendfileSource([]byte("x"))
	dg, err := kernel.NewSocket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	n.fixture("socket", err)
	n.Cleanup(func() { dg.Close() })
	a, _ := testkit.SocketPair(n, unix.SOCK_STREAM)
	for _, c := range []struct {
		what          string
		sock          *kernel.Socket
		offset, count int64
	}{
		{"a datagram socket", dg, 0, 0},
		{"a negative offset", a, -1, 0},
		{"a negative count", a, 0, -1},
	} {
		_, err := runT(n, l, "sock_sendfile with "+c.what, func(co *kernel.Co) (int64, error) {
			return kernel.SockSendfile(co, c.sock, f, c.offset, c.count, true)
		})
		require.ErrorIs(n, err, unix.EINVAL, "rule: SockSendfile refuses %s with EINVAL", c.what)
	}
}

// nSendfileCancelled: a SockSendfile cancelled while it waits on a full
// socket leaves no writer behind and the file position exactly at what the
// peer can read, zero-copy and (when it can be forced) in the fallback.
func nSendfileCancelled(n *nt) {
	n.sendfileCancelled("zero-copy")
	if c := n.newDriver().Capabilities(); c.Family != "selector" {
		// Known kernel gap: on a completion driver a write can complete in
		// the back-end after its task was cancelled (the seam lets
		// completion win that race), and kernel/sockwait.go does not count
		// it, so the read-and-send fallback loses the file position.
		n.Skip(fmt.Sprintf("read-and-send half: the kernel's sock_sendall does not count a write the %s %s driver completed after the cancel (kernel gap)", c.Backend, c.Family))
	}
	n.sendfileCancelled("read-and-send", sdk.CapSendfile)
}

func (n *nt) sendfileCancelled(mode string, lacking ...string) {
	l := n.newLoop(lacking...)
	a, b := testkit.SocketPair(n, unix.SOCK_STREAM)
	f := n.sendfileSource(pattern(8 << 20))
	// Nobody reads b: the socket fills and sendfile must wait, and is
	// cancelled while it waits.
	pos, err := runT(n, l, "cancel a waiting sendfile ("+mode+")", func(co *kernel.Co) (int64, error) {
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
			return 0, fmt.Errorf("rule: a cancelled SockSendfile returns the cancellation, not %v", err)
		}
		return n.filePos(f), nil
	})
	require.NoError(n, err, mode)
	require.Positive(n, pos, "rule: bytes go out before the socket fills (%s)", mode)
	require.Less(n, pos, int64(8<<20), "rule: a full socket makes SockSendfile wait (%s)", mode)
	removed, err := l.RemoveWriter(a.Fd())
	require.NoError(n, err)
	require.False(n, removed, "rule: a cancelled SockSendfile leaves no writer registered (%s)", mode)

	// The position is exactly what the peer can read.
	var got int64
	buf := make([]byte, 1<<20)
	for {
		k, err := unix.Read(b.Fd(), buf)
		if err == unix.EAGAIN {
			break
		}
		n.fixture("read", err)
		got += int64(k)
	}
	require.Equal(n, pos, got, "rule: after cancellation the file position is exactly what was sent (%s)", mode)
}

// sfSink is a server protocol that collects everything until EOF.
type sfSink struct {
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

type sfOver struct {
	sent     int64
	got      []byte
	sfErr    error
	midWrite error
}

// sfOverTransport writes prefix through a fresh TCP connection's
// transport, then Sendfile, then EOF, and returns what the server received;
// a task tries to Write while Sendfile runs, and its error is returned too
// (its bytes, if the write went through, are removed from got).
func (n *nt) sfOverTransport(l *kernel.Loop, prefix []byte, f *os.File, offset, count int64, fallback bool) sfOver {
	r, err := runT(n, l, "sendfile over a transport", func(co *kernel.Co) (sfOver, error) {
		sink := &sfSink{done: kernel.CreateFuture[[]byte](l)}
		srv, err := kernel.CreateServer(co, func() *sfSink { return sink }, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return sfOver{}, err
		}
		defer srv.Close()
		tr, _, err := kernel.CreateConnection(co, func() sfClient { return sfClient{} }, "127.0.0.1", n.tcpPort(srv, 0), nil)
		if err != nil {
			return sfOver{}, err
		}
		defer tr.Close()
		if err := tr.Write(prefix); err != nil {
			return sfOver{}, err
		}
		var mid error
		probe, _ := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
			mid = tr.Write([]byte("interloper"))
			return struct{}{}, nil
		})
		k, sfErr := kernel.Sendfile(co, tr, f, offset, count, fallback)
		if _, err := probe.Await(co); err != nil {
			return sfOver{}, err
		}
		if err := tr.WriteEOF(); err != nil {
			return sfOver{}, err
		}
		got, err := sink.done.Await(co)
		return sfOver{k, bytes.Clone(got), sfErr, mid}, err
	})
	require.NoError(n, err, "rule: a transport carries the prefix and the file, then EOF")
	if r.midWrite == nil {
		r.got = bytes.Replace(r.got, []byte("interloper"), nil, 1)
	}
	return r
}

// nSendfileOverTransport: Sendfile on a TCP transport sends the buffered
// prefix first, then the file from offset for count bytes; zero-copy
// refuses Write meanwhile. The fallback switch must not matter when
// zero-copy works; with zero-copy forced off (when the run can), fallback
// writes through the transport and no fallback is ErrSendfileNotAvailable.
func nSendfileOverTransport(n *nt) {
	l := n.newLoop()
	data := pattern(2<<20 + 77)
	// A prefix bigger than the socket buffers, so part of it is still in
	// the transport's buffer when Sendfile starts: it must go out first.
	prefix := bytes.Repeat([]byte("P"), 3<<20)
	check := func(mode string, fallback bool, r sfOver, f *os.File) {
		require.NoError(n, r.sfErr, "rule: Sendfile succeeds (%s, fallback=%v)", mode, fallback)
		require.Equal(n, int64(1<<20), r.sent, "rule: Sendfile returns the bytes sent (%s)", mode)
		require.Equal(n, len(prefix)+1<<20, len(r.got), "rule: the peer receives prefix and file (%s)", mode)
		require.True(n, bytes.Equal(prefix, r.got[:len(prefix)]), "rule: the buffered prefix goes out before the file (%s)", mode)
		require.True(n, bytes.Equal(data[100:100+1<<20], r.got[len(prefix):]), "rule: the file's bytes from offset, count of them (%s)", mode)
		require.Equal(n, int64(100+1<<20), n.filePos(f), "rule: the file position ends after the last byte sent (%s)", mode)
	}
	for _, fallback := range []bool{true, false} {
		f := n.sendfileSource(data)
		r := n.sfOverTransport(l, prefix, f, 100, 1<<20, fallback)
		check("zero-copy", fallback, r, f)
		require.Error(n, r.midWrite, "rule: Write while zero-copy Sendfile owns the socket fails")
	}
	l = n.newLoop(sdk.CapSendfile) // a driver without zero-copy sendfile
	f := n.sendfileSource(data)
	check("read-and-send", true, n.sfOverTransport(l, prefix, f, 100, 1<<20, true), f)
	f = n.sendfileSource(data)
	r := n.sfOverTransport(l, nil, f, 0, 0, false)
	require.ErrorIs(n, r.sfErr, kernel.ErrSendfileNotAvailable, "rule: without zero-copy and without fallback, Sendfile fails with ErrSendfileNotAvailable")
	require.Zero(n, r.sent)
	require.Empty(n, r.got, "rule: a refused Sendfile sends nothing")
}

// sfPlainTransport is a Transport that does not offer Sendfile's hook.
type sfPlainTransport struct{ kernel.Transport }

func (sfPlainTransport) IsClosing() bool { return false }

// nSendfileUnsupportedTransport: a transport the kernel did not make does
// not support Sendfile.
func nSendfileUnsupportedTransport(n *nt) {
	l := n.newLoop()
	f := n.sendfileSource([]byte("x"))
	_, err := runT(n, l, "sendfile on a foreign transport", func(co *kernel.Co) (int64, error) {
		return kernel.Sendfile(co, sfPlainTransport{}, f, 0, 0, true)
	})
	require.ErrorIs(n, err, kernel.ErrSendfileNotAvailable, "rule: Sendfile on a transport without sendfile support fails with ErrSendfileNotAvailable")
}

// nSendfileClosingTransport: Sendfile on a closing transport fails with
// ErrTransportClosed.
func nSendfileClosingTransport(n *nt) {
	l := n.newLoop()
	f := n.sendfileSource([]byte("x"))
	_, err := runT(n, l, "sendfile on a closing transport", func(co *kernel.Co) (int64, error) {
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
	require.ErrorIs(n, err, kernel.ErrTransportClosed, "rule: Sendfile on a closing transport fails with ErrTransportClosed")
}
