package kernel_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/kernel"
)

func TestStreamRoundTrip(t *testing.T)       { forEachBackend(t, caseStreamRoundTrip) }
func TestStreamHalfClose(t *testing.T)       { forEachBackend(t, caseStreamHalfClose) }
func TestStreamAbort(t *testing.T)           { forEachBackend(t, caseStreamAbort) }
func TestStreamPauseReading(t *testing.T)    { forEachBackend(t, caseStreamPauseReading) }
func TestStreamBackPressure(t *testing.T)    { forEachBackend(t, caseStreamBackPressure) }
func TestStreamProtocolPanic(t *testing.T)   { forEachBackend(t, caseStreamProtocolPanic) }
func TestStreamLostOnce(t *testing.T)        { forEachBackend(t, caseStreamLostOnce) }
func TestStreamBufferedProto(t *testing.T)   { forEachBackend(t, caseStreamBufferedProtocol) }
func TestStreamWritelines(t *testing.T)      { forEachBackend(t, caseStreamWritelines) }
func TestStreamUnixAbstract(t *testing.T)    { forEachBackend(t, caseStreamUnix) }
func TestStreamExtraInfo(t *testing.T)       { forEachBackend(t, caseStreamExtraInfo) }
func TestStreamWriteAfterClose(t *testing.T) { forEachBackend(t, caseStreamWriteErrors) }

// caseStreamRoundTrip: sizes from 1 B to 8 MiB go to an echo server and
// back intact; the client half-closes to mark the end, the server echoes
// the EOF, and both sides see ConnectionLost exactly once.
func caseStreamRoundTrip(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	var srvs serverProtos
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, srvs.factory(newEcho), []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		port := tcpPort(t, srv, 0)
		for _, n := range []int{1, 100, 64 << 10, 1 << 20, 8 << 20} {
			want := pattern(n)
			cli := &recProto{keepOpen: true}
			tr, p, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", port, nil)
			if err != nil {
				return err
			}
			require.Same(t, cli, p)
			require.Equal(t, 1, cli.made)
			require.NoError(t, tr.Write(want))
			require.NoError(t, tr.WriteEOF())
			if err := waitUntil(co, "echo EOF", func() bool { return cli.eofs == 1 }); err != nil {
				return err
			}
			require.Equal(t, n, cli.data.Len(), "size %d", n)
			require.True(t, bytes.Equal(want, cli.data.Bytes()), "size %d: echoed bytes differ", n)
			require.NoError(t, tr.Close())
			if err := waitUntil(co, "client lost", func() bool { return cli.lost > 0 }); err != nil {
				return err
			}
			require.NoError(t, cli.lostErr)
		}
		// Each server protocol sees its client's close as EOF, answered with
		// its own close after the echo, and loses the connection once.
		if err := waitUntil(co, "server conns lost", func() bool {
			for _, s := range srvs.list {
				if s.lost == 0 {
					return false
				}
			}
			return true
		}); err != nil {
			return err
		}
		for _, s := range srvs.list {
			assert.Equal(t, 1, s.made)
			assert.Equal(t, 1, s.lost)
		}
		return nil
	})
}

// caseStreamHalfClose: each side can half-close and keep writing the other
// way: the client sends EOF first and still receives; then the server half-
// closes first and still receives.
func caseStreamHalfClose(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	var srvs serverProtos
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, srvs.factory(func() *recProto {
			return &recProto{keepOpen: true, onEOF: func(p *recProto) {
				// The client's EOF arrived: answer after it, then close.
				p.tr.Write([]byte("after your eof"))
				p.tr.Close()
			}}
		}), []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		port := tcpPort(t, srv, 0)

		// Client half-closes first.
		cli := &recProto{keepOpen: true}
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", port, nil)
		if err != nil {
			return err
		}
		require.True(t, tr.CanWriteEOF())
		require.NoError(t, tr.Write([]byte("hello")))
		require.NoError(t, tr.WriteEOF())
		require.ErrorIs(t, tr.Write([]byte("x")), kernel.ErrWriteAfterEOF)
		if err := waitUntil(co, "server reply + EOF", func() bool { return cli.eofs == 1 }); err != nil {
			return err
		}
		require.Equal(t, "after your eof", cli.data.String())
		require.Equal(t, "hello", srvs.list[0].data.String())
		require.False(t, tr.IsReading(), "no reading after EOF")
		tr.Close()

		// Server half-closes first: its protocol writes and sends EOF on
		// connect; the client keeps the connection open and answers.
		srv2, err := kernel.CreateServer(co, func() *recProto {
			p := &recProto{keepOpen: true}
			p.onMade = func(p *recProto) { p.tr.Write([]byte("greeting")); p.tr.WriteEOF() }
			p.onData = func(p *recProto, b []byte) {
				if p.data.String() == "answer" {
					p.tr.Close()
				}
			}
			srvs.list = append(srvs.list, p)
			return p
		}, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv2.Close()
		cli2 := &recProto{keepOpen: true, onEOF: func(p *recProto) { p.tr.Write([]byte("answer")) }}
		tr2, _, err := kernel.CreateConnection(co, func() *recProto { return cli2 }, "127.0.0.1", tcpPort(t, srv2, 0), nil)
		if err != nil {
			return err
		}
		s2 := srvs.list[len(srvs.list)-1]
		if err := waitUntil(co, "server2 lost", func() bool { return s2.lost == 1 }); err != nil {
			return err
		}
		require.Equal(t, "answer", s2.data.String())
		require.Equal(t, "greeting", cli2.data.String())
		// The client stopped reading at EOF, so it learns of the end only
		// when it closes itself, as in asyncio.
		require.Equal(t, 0, cli2.lost)
		tr2.Close()
		if err := waitUntil(co, "client2 lost", func() bool { return cli2.lost == 1 }); err != nil {
			return err
		}
		require.Equal(t, []string{"made", "eof", "lost"}, cli2.madeOrder)
		return nil
	})
}

// caseStreamAbort: Abort drops queued data, ConnectionLost(nil) follows
// once, and the peer sees the connection end.
func caseStreamAbort(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	var srvs serverProtos
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, srvs.factory(func() *recProto {
			p := &recProto{discard: true}
			p.onMade = func(p *recProto) { p.tr.PauseReading() } // let the client's buffer fill
			return p
		}), []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		cli := &recProto{}
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", tcpPort(t, srv, 0), nil)
		if err != nil {
			return err
		}
		require.NoError(t, tr.Write(make([]byte, 16<<20)))
		require.Greater(t, tr.GetWriteBufferSize(), 0, "16 MiB cannot all fit in the socket buffers")
		tr.Abort()
		require.True(t, tr.IsClosing())
		require.Equal(t, 0, tr.GetWriteBufferSize())
		tr.Abort()
		require.NoError(t, tr.Close())
		require.Equal(t, 0, cli.lost, "ConnectionLost comes from a later callback")
		if err := waitUntil(co, "client lost", func() bool { return cli.lost > 0 }); err != nil {
			return err
		}
		require.NoError(t, cli.lostErr)
		s := srvs.list[0]
		s.tr.ResumeReading()
		if err := waitUntil(co, "server lost", func() bool { return s.lost > 0 }); err != nil {
			return err
		}
		require.NoError(t, co.Sleep(5*time.Millisecond))
		require.Equal(t, 1, cli.lost)
		require.Equal(t, 1, s.lost)
		return nil
	})
}

// caseStreamPauseReading: a paused transport delivers nothing; resuming
// delivers what arrived meanwhile.
func caseStreamPauseReading(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	var srvs serverProtos
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, srvs.factory(func() *recProto { return &recProto{} }), []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		cli := &recProto{}
		// Pausing inside ConnectionMade must hold from the start.
		cli.onMade = func(p *recProto) { require.NoError(t, p.tr.PauseReading()) }
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", tcpPort(t, srv, 0), nil)
		if err != nil {
			return err
		}
		require.False(t, tr.IsReading())
		if err := waitUntil(co, "server conn", func() bool { return len(srvs.list) == 1 && srvs.list[0].made == 1 }); err != nil {
			return err
		}
		require.NoError(t, srvs.list[0].tr.Write([]byte("while paused")))
		for range 20 {
			require.NoError(t, co.Sleep(time.Millisecond))
		}
		require.Equal(t, 0, cli.data.Len(), "paused transport delivered data")
		require.NoError(t, tr.PauseReading(), "pausing twice is harmless")
		require.NoError(t, tr.ResumeReading())
		require.True(t, tr.IsReading())
		if err := waitUntil(co, "data after resume", func() bool { return cli.data.Len() == len("while paused") }); err != nil {
			return err
		}
		require.NoError(t, tr.ResumeReading(), "resuming twice is harmless")
		tr.Close()
		require.False(t, tr.IsReading())
		return nil
	})
}

// caseStreamBackPressure: a sender facing a reader that stopped reading
// gets PauseWriting once its buffer passes the high water mark, stops, and
// its buffer stays bounded; when the reader resumes, ResumeWriting follows
// and everything arrives.
func caseStreamBackPressure(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	const total = 4 << 20
	const chunk = 32 << 10
	var srvs serverProtos
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, srvs.factory(func() *recProto {
			return &recProto{discard: true, onMade: func(p *recProto) { p.tr.PauseReading() }}
		}), []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		cli := &recProto{}
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", tcpPort(t, srv, 0), nil)
		if err != nil {
			return err
		}
		low, high := tr.GetWriteBufferLimits()
		require.Equal(t, 64<<10, high)
		require.Equal(t, 16<<10, low)
		require.Error(t, tr.SetWriteBufferLimits(10, 20), "low above high")
		require.NoError(t, tr.SetWriteBufferLimits(-1, 1000))
		low, high = tr.GetWriteBufferLimits()
		require.Equal(t, []int{1000, 4000}, []int{low, high}, "high defaults to 4*low")
		require.NoError(t, tr.SetWriteBufferLimits(-1, -1))
		low, high = tr.GetWriteBufferLimits()
		require.Equal(t, []int{16 << 10, 64 << 10}, []int{low, high})

		chunkBuf := pattern(chunk)
		sent, maxBuf := 0, 0
		// A well-behaved writer: write while not paused.
		for sent < total {
			if cli.paused > cli.resumed {
				maxBuf = max(maxBuf, tr.GetWriteBufferSize())
				if sent > 0 && len(srvs.list) == 1 && !srvs.list[0].tr.IsReading() && cli.paused == 1 {
					// First pause: the receiver is stalled; check the bound
					// and let it read.
					require.LessOrEqual(t, tr.GetWriteBufferSize(), high+chunk)
					for range 10 {
						require.NoError(t, co.Sleep(time.Millisecond))
					}
					require.LessOrEqual(t, tr.GetWriteBufferSize(), high+chunk, "buffer grew while paused")
					srvs.list[0].tr.ResumeReading()
				}
				if err := co.Yield(); err != nil {
					return err
				}
				continue
			}
			require.NoError(t, tr.Write(chunkBuf))
			sent += chunk
			maxBuf = max(maxBuf, tr.GetWriteBufferSize())
		}
		require.GreaterOrEqual(t, cli.paused, 1, "PauseWriting was never called")
		require.LessOrEqual(t, maxBuf, high+chunk, "the write buffer outgrew the high water mark")
		if err := waitUntil(co, "all data", func() bool { return srvs.list[0].n == total }); err != nil {
			return err
		}
		require.Equal(t, cli.paused, cli.resumed, "every pause was followed by a resume")
		require.Equal(t, 0, tr.GetWriteBufferSize())
		tr.Close()
		return nil
	})
}

// caseStreamProtocolPanic: a panic in DataReceived goes to the exception
// handler with the protocol and transport set, and the transport is
// aborted with the panic as ConnectionLost's error.
func caseStreamProtocolPanic(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	exc := excRecorder(l)
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, func() *recProto {
			return &recProto{onData: func(p *recProto, b []byte) { panic("boom") }}
		}, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		cli := &recProto{}
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", tcpPort(t, srv, 0), nil)
		if err != nil {
			return err
		}
		tr.Write([]byte("trigger"))
		if err := waitUntil(co, "client sees the abort", func() bool { return cli.lost == 1 }); err != nil {
			return err
		}
		require.Len(t, *exc, 1)
		c := (*exc)[0]
		require.Contains(t, c.Message, "DataReceived")
		require.NotNil(t, c.Protocol)
		require.NotNil(t, c.Transport)
		var pe *kernel.PanicError
		require.ErrorAs(t, c.Err, &pe)
		require.Equal(t, "boom", pe.Value)
		sp := c.Protocol.(*recProto)
		require.Equal(t, 1, sp.lost)
		require.ErrorAs(t, sp.lostErr, &pe)
		return nil
	})
}

// caseStreamLostOnce: Close, Abort, peer resets and a second Close in any
// order lead to exactly one ConnectionLost, after ConnectionMade.
func caseStreamLostOnce(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	var srvs serverProtos
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, srvs.factory(func() *recProto { return &recProto{} }), []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		port := tcpPort(t, srv, 0)
		for i, ending := range []func(tr kernel.Transport){
			func(tr kernel.Transport) { tr.Close(); tr.Abort(); tr.Close() },
			func(tr kernel.Transport) { tr.Abort(); tr.Close(); tr.Abort() },
			func(tr kernel.Transport) { tr.Write(make([]byte, 8<<20)); tr.Close(); tr.Abort() },
			func(tr kernel.Transport) {}, // the server side aborts below
		} {
			cli := &recProto{}
			tr, _, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", port, nil)
			if err != nil {
				return err
			}
			ending(tr)
			if i == 3 {
				if err := waitUntil(co, "server conn", func() bool { return len(srvs.list) == 4 && srvs.list[3].tr != nil }); err != nil {
					return err
				}
				srvs.list[3].tr.Abort()
			}
			if err := waitUntil(co, "lost", func() bool { return cli.lost > 0 }); err != nil {
				return err
			}
			for range 5 {
				require.NoError(t, co.Sleep(time.Millisecond))
			}
			require.Equal(t, 1, cli.lost, "ending %d", i)
			require.Equal(t, "made", cli.madeOrder[0])
			require.Equal(t, "lost", cli.madeOrder[len(cli.madeOrder)-1])
		}
		srv.AbortClients()
		if err := waitUntil(co, "server side lost", func() bool {
			for _, s := range srvs.list {
				if s.lost == 0 {
					return false
				}
			}
			return len(srvs.list) == 4
		}); err != nil {
			return err
		}
		for _, s := range srvs.list {
			require.Equal(t, 1, s.lost)
		}
		return nil
	})
}

// bufProto is a BufferedProtocol receiving into its own small buffer.
type bufProto struct {
	buf   []byte
	got   bytes.Buffer
	hints []int
	eof   bool
	lost  int
}

func (p *bufProto) ConnectionMade(kernel.BaseTransport) {}
func (p *bufProto) ConnectionLost(error)                { p.lost++ }
func (p *bufProto) GetBuffer(hint int) []byte           { p.hints = append(p.hints, hint); return p.buf }
func (p *bufProto) BufferUpdated(n int)                 { p.got.Write(p.buf[:n]) }
func (p *bufProto) EOFReceived() bool                   { p.eof = true; return false }

func caseStreamBufferedProtocol(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, func() *recProto {
			return &recProto{onMade: func(p *recProto) { p.tr.Write(pattern(100000)); p.tr.Close() }}
		}, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		cli := &bufProto{buf: make([]byte, 1000)}
		_, _, err = kernel.CreateConnection(co, func() *bufProto { return cli }, "127.0.0.1", tcpPort(t, srv, 0), nil)
		if err != nil {
			return err
		}
		if err := waitUntil(co, "eof", func() bool { return cli.lost == 1 }); err != nil {
			return err
		}
		require.True(t, cli.eof)
		require.True(t, bytes.Equal(pattern(100000), cli.got.Bytes()))
		require.GreaterOrEqual(t, len(cli.hints), 100, "reads are bounded by the protocol's buffer")
		return nil
	})
}

func caseStreamWritelines(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, newEcho, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		cli := &recProto{keepOpen: true}
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", tcpPort(t, srv, 0), nil)
		if err != nil {
			return err
		}
		var want bytes.Buffer
		var bufs [][]byte
		for i := range 150 { // more buffers than one sendmsg takes
			b := pattern(i * 13)
			bufs = append(bufs, b)
			want.Write(b)
		}
		saved := append([][]byte(nil), bufs...)
		require.NoError(t, tr.Writelines(bufs))
		require.Equal(t, saved, bufs, "Writelines must not modify the caller's slice")
		require.NoError(t, tr.Writelines([][]byte{[]byte("tail"), nil}))
		want.WriteString("tail")
		tr.WriteEOF()
		if err := waitUntil(co, "echo", func() bool { return cli.eofs == 1 }); err != nil {
			return err
		}
		require.True(t, bytes.Equal(want.Bytes(), cli.data.Bytes()))
		tr.Close()
		return nil
	})
}

// caseStreamUnix: Unix servers on a path (stale file replaced, file removed
// on close) and on abstract names, "@name" and "\x00name".
func caseStreamUnix(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	path := filepath.Join(t.TempDir(), "srv.sock")
	abstract := fmt.Sprintf("@loopkernel-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	runCo(t, l, func(co *kernel.Co) error {
		// A stale socket file left by an earlier process is replaced.
		stale, err := kernel.NewSocket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		require.NoError(t, err)
		require.NoError(t, stale.Bind(unixAddr(path)))
		stale.Close()

		for _, name := range []string{path, abstract, "\x00" + abstract[1:] + "-nul"} {
			srv, err := kernel.CreateUnixServer(co, newEcho, name, nil)
			if err != nil {
				return err
			}
			cli := &recProto{keepOpen: true}
			dial := name
			tr, _, err := kernel.CreateUnixConnection(co, func() *recProto { return cli }, dial, nil)
			if err != nil {
				return err
			}
			tr.Write([]byte("unix " + name))
			tr.WriteEOF()
			if err := waitUntil(co, "echo", func() bool { return cli.eofs == 1 }); err != nil {
				return err
			}
			require.Equal(t, "unix "+name, cli.data.String())
			tr.Close()
			srv.Close()
			if err := srv.WaitClosed(co); err != nil {
				return err
			}
		}
		_, err = os.Stat(path)
		require.True(t, errors.Is(err, os.ErrNotExist), "socket file removed on close: %v", err)
		_, _, err = kernel.CreateUnixConnection(co, func() *recProto { return &recProto{} }, abstract, nil)
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
		return nil
	})
}

func caseStreamExtraInfo(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, newEcho, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		port := tcpPort(t, srv, 0)
		tr, p, err := kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "127.0.0.1", port, nil)
		if err != nil {
			return err
		}
		peer, ok := tr.GetExtraInfo("peername")
		require.True(t, ok)
		require.Equal(t, "127.0.0.1:"+port, peer.(fmt.Stringer).String())
		_, ok = tr.GetExtraInfo("sockname")
		require.True(t, ok)
		s, ok := tr.GetExtraInfo("socket")
		require.True(t, ok)
		sock := s.(*kernel.Socket)
		nd, err := sock.GetsockoptInt(syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
		require.NoError(t, err)
		require.NotZero(t, nd, "TCP_NODELAY is on by default")
		_, ok = tr.GetExtraInfo("nonsense")
		require.False(t, ok)
		require.Same(t, p, tr.GetProtocol())
		other := &recProto{}
		tr.SetProtocol(other)
		require.Same(t, other, tr.GetProtocol())
		tr.Close()
		if err := waitUntil(co, "lost on the new protocol", func() bool { return other.lost == 1 }); err != nil {
			return err
		}
		require.Equal(t, 0, p.lost)
		return nil
	})
}

func caseStreamWriteErrors(t *testing.T, newLoop loopFactory) {
	l := newLoop(t)
	runCo(t, l, func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, newEcho, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		cli := &recProto{}
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", tcpPort(t, srv, 0), nil)
		if err != nil {
			return err
		}
		require.NoError(t, tr.Write(nil))
		tr.Close()
		require.ErrorIs(t, tr.Write([]byte("x")), kernel.ErrTransportClosed)
		require.ErrorIs(t, tr.Writelines([][]byte{[]byte("x")}), kernel.ErrTransportClosed)
		return waitUntil(co, "lost", func() bool { return cli.lost == 1 })
	})
}
