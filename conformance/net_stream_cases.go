package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
)

// Stream transports: TCP and Unix connections made by CreateConnection and
// accepted by CreateServer, seen through the protocols on both ends.
var netStreamCases = []ncase{
	{name: "net/stream/round-trip", run: nStreamRoundTrip},
	{name: "net/stream/half-close/client-first", run: nStreamHalfCloseClient},
	{name: "net/stream/half-close/server-first", run: nStreamHalfCloseServer},
	{name: "net/stream/abort", run: nStreamAbort},
	{name: "net/stream/pause-resume-reading", run: nStreamPauseReading},
	{name: "net/stream/back-pressure", run: nStreamBackPressure},
	{name: "net/stream/protocol-panic", run: nStreamProtocolPanic},
	{name: "net/stream/lost-once", run: nStreamLostOnce},
	{name: "net/stream/buffered-protocol", run: nStreamBufferedProtocol},
	{name: "net/stream/writelines", run: nStreamWritelines},
	{name: "net/stream/unix-path", run: nStreamUnixPath},
	{name: "net/stream/unix-abstract", run: nStreamUnixAbstract},
	{name: "net/stream/extra-info", run: nStreamExtraInfo},
	{name: "net/stream/write-after-close", run: nStreamWriteAfterClose},
}

// roundTripSizes are the payloads of the round-trip case: 1 B to 8 MiB.
var roundTripSizes = []int{1, 100, 64 << 10, 1 << 20, 8 << 20}

// nStreamRoundTrip: sizes from 1 B to 8 MiB go to an echo server and back
// intact; the client half-closes to mark the end, the server echoes the EOF,
// and both sides see ConnectionLost exactly once.
func nStreamRoundTrip(n *nt) {
	l := n.newLoop()
	var srvs serverProtos
	n.run(l, "echo round trips", func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, srvs.factory(newEcho), []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		port := n.tcpPort(srv, 0)
		for _, size := range roundTripSizes {
			want := pattern(size)
			cli := &recProto{keepOpen: true}
			tr, p, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", port, nil)
			if err != nil {
				return err
			}
			require.Same(n, cli, p, "rule: CreateConnection returns the protocol its factory made")
			require.Equal(n, 1, cli.made, "rule: ConnectionMade is called before CreateConnection returns")
			require.NoError(n, tr.Write(want))
			require.NoError(n, tr.WriteEOF())
			if err := n.waitUntil(co, fmt.Sprintf("rule: a %d-byte echo ends with the server's EOF", size), func() bool { return cli.eofs == 1 }); err != nil {
				return err
			}
			require.Equal(n, size, cli.data.Len(), "rule: every byte written comes back (size %d)", size)
			require.True(n, bytes.Equal(want, cli.data.Bytes()), "rule: bytes arrive intact and in order (size %d)", size)
			require.NoError(n, tr.Close())
			if err := n.waitUntil(co, "rule: Close ends in ConnectionLost", func() bool { return cli.lost > 0 }); err != nil {
				return err
			}
			require.NoError(n, cli.lostErr, "rule: a clean close reports ConnectionLost(nil)")
		}
		// Each server protocol sees its client's close as EOF, answered with
		// its own close after the echo, and loses the connection once.
		if err := n.waitUntil(co, "rule: the server side loses every connection", func() bool { return allLost(srvs.list) }); err != nil {
			return err
		}
		require.Len(n, srvs.list, len(roundTripSizes), "rule: one server protocol per accepted connection")
		for _, s := range srvs.list {
			assert.Equal(n, 1, s.made, "rule: ConnectionMade once per connection")
			assert.Equal(n, 1, s.lost, "rule: ConnectionLost once per connection")
		}
		return nil
	})
}

// nStreamHalfCloseClient: the client sends EOF first and still receives
// what the server writes after seeing it.
func nStreamHalfCloseClient(n *nt) {
	l := n.newLoop()
	var srvs serverProtos
	n.run(l, "client half-closes first", func(co *kernel.Co) error {
		cli := &recProto{keepOpen: true}
		srv, tr, err := testkit.Connect(co, srvs.factory(func() *recProto {
			return &recProto{keepOpen: true, onEOF: func(p *recProto) {
				// The client's EOF arrived: answer after it, then close.
				p.tr.Write([]byte("after your eof"))
				p.tr.Close()
			}}
		}), cli)
		if err != nil {
			return err
		}
		defer srv.Close()
		require.True(n, tr.CanWriteEOF(), "rule: a TCP transport can write EOF")
		require.NoError(n, tr.Write([]byte("hello")))
		require.NoError(n, tr.WriteEOF())
		require.ErrorIs(n, tr.Write([]byte("x")), kernel.ErrWriteAfterEOF, "rule: Write after WriteEOF fails")
		if err := n.waitUntil(co, "rule: a half-closed client still receives the reply and then EOF", func() bool { return cli.eofs == 1 }); err != nil {
			return err
		}
		require.Equal(n, "after your eof", cli.data.String(), "rule: data written after the peer's EOF arrives")
		require.Equal(n, "hello", srvs.list[0].data.String(), "rule: data written before EOF arrives before EOF")
		require.Equal(n, 1, srvs.list[0].eofs, "rule: the server's protocol sees EOFReceived once")
		require.False(n, tr.IsReading(), "rule: no reading after EOF")
		require.False(n, tr.IsClosing(), "rule: a protocol whose EOFReceived returns true keeps its transport open")
		require.Equal(n, 0, cli.lost, "rule: a protocol whose EOFReceived returns true is not told the connection is lost")
		require.NoError(n, tr.Close())
		return n.waitUntil(co, "rule: the client loses the connection after Close", func() bool { return cli.lost == 1 })
	})
}

// nStreamHalfCloseServer: the server writes and sends EOF on connect; the
// client keeps the connection open, answers, and learns of the end only
// when it closes itself, as in asyncio.
func nStreamHalfCloseServer(n *nt) {
	l := n.newLoop()
	var srvs serverProtos
	n.run(l, "server half-closes first", func(co *kernel.Co) error {
		cli := &recProto{keepOpen: true, onEOF: func(p *recProto) { p.tr.Write([]byte("answer")) }}
		srv, tr, err := testkit.Connect(co, srvs.factory(func() *recProto {
			p := &recProto{keepOpen: true}
			p.onMade = func(p *recProto) { p.tr.Write([]byte("greeting")); p.tr.WriteEOF() }
			p.onData = func(p *recProto, b []byte) {
				if p.data.String() == "answer" {
					p.tr.Close()
				}
			}
			return p
		}), cli)
		if err != nil {
			return err
		}
		defer srv.Close()
		if err := n.waitUntil(co, "rule: a half-closed server still receives the client's answer", func() bool {
			return len(srvs.list) == 1 && srvs.list[0].lost == 1
		}); err != nil {
			return err
		}
		s := srvs.list[0]
		require.Equal(n, "answer", s.data.String(), "rule: data written after the peer's EOF arrives")
		require.Equal(n, "greeting", cli.data.String(), "rule: data written before EOF arrives before EOF")
		require.Equal(n, 0, cli.lost, "rule: a protocol that keeps the transport open at EOF is not told the connection is lost until it closes")
		require.NoError(n, tr.Close())
		if err := n.waitUntil(co, "rule: the client loses the connection after Close", func() bool { return cli.lost == 1 }); err != nil {
			return err
		}
		require.Equal(n, []string{"made", "eof", "lost"}, cli.madeOrder, "rule: ConnectionMade, EOFReceived, ConnectionLost, in that order")
		return nil
	})
}

// nStreamAbort: Abort drops queued data, ConnectionLost(nil) follows once
// from a later callback, and the peer sees the connection end.
func nStreamAbort(n *nt) {
	l := n.newLoop()
	var srvs serverProtos
	n.run(l, "abort", func(co *kernel.Co) error {
		cli := &recProto{}
		srv, tr, err := testkit.Connect(co, srvs.factory(func() *recProto {
			p := &recProto{discard: true}
			p.onMade = func(p *recProto) { p.tr.PauseReading() } // let the client's buffer fill
			return p
		}), cli)
		if err != nil {
			return err
		}
		defer srv.Close()
		require.NoError(n, tr.Write(make([]byte, 16<<20)))
		require.Greater(n, tr.GetWriteBufferSize(), 0, "fixture: 16 MiB cannot all fit in the socket buffers")
		tr.Abort()
		require.True(n, tr.IsClosing(), "rule: an aborted transport is closing")
		require.Equal(n, 0, tr.GetWriteBufferSize(), "rule: Abort discards the write buffer")
		tr.Abort()
		require.NoError(n, tr.Close(), "rule: Close after Abort is harmless")
		require.Equal(n, 0, cli.lost, "rule: ConnectionLost comes from a later callback, not from inside Abort")
		if err := n.waitUntil(co, "rule: an aborted transport calls ConnectionLost", func() bool { return cli.lost > 0 }); err != nil {
			return err
		}
		require.NoError(n, cli.lostErr, "rule: Abort reports ConnectionLost(nil)")
		require.Len(n, srvs.list, 1)
		s := srvs.list[0]
		s.tr.ResumeReading()
		if err := n.waitUntil(co, "rule: the peer of an aborted connection sees it end", func() bool { return s.lost > 0 }); err != nil {
			return err
		}
		if err := settleTurns(co, 5); err != nil {
			return err
		}
		require.Equal(n, 1, cli.lost, "rule: ConnectionLost once")
		require.Equal(n, 1, s.lost, "rule: ConnectionLost once")
		return nil
	})
}

// nStreamPauseReading: a paused transport delivers nothing; resuming
// delivers what arrived meanwhile.
func nStreamPauseReading(n *nt) {
	l := n.newLoop()
	var srvs serverProtos
	n.run(l, "pause and resume reading", func(co *kernel.Co) error {
		cli := &recProto{}
		// Pausing inside ConnectionMade must hold from the start.
		cli.onMade = func(p *recProto) { require.NoError(n, p.tr.PauseReading()) }
		srv, tr, err := testkit.Connect(co, srvs.factory(func() *recProto { return &recProto{} }), cli)
		if err != nil {
			return err
		}
		defer srv.Close()
		require.False(n, tr.IsReading(), "rule: PauseReading in ConnectionMade holds")
		if err := n.waitUntil(co, "rule: the server accepts the connection", func() bool { return len(srvs.list) == 1 && srvs.list[0].made == 1 }); err != nil {
			return err
		}
		require.NoError(n, srvs.list[0].tr.Write([]byte("while paused")))
		if err := settleTurns(co, 20); err != nil {
			return err
		}
		require.Equal(n, 0, cli.data.Len(), "rule: a paused transport delivers no data")
		require.NoError(n, tr.PauseReading(), "rule: pausing twice is harmless")
		require.NoError(n, tr.ResumeReading())
		require.True(n, tr.IsReading(), "rule: IsReading after ResumeReading")
		if err := n.waitUntil(co, "rule: data that arrived while paused is delivered after ResumeReading", func() bool {
			return cli.data.Len() == len("while paused")
		}); err != nil {
			return err
		}
		require.NoError(n, tr.ResumeReading(), "rule: resuming twice is harmless")
		tr.Close()
		require.False(n, tr.IsReading(), "rule: a closing transport is not reading")
		return nil
	})
}

// nStreamBackPressure: a sender facing a reader that stopped reading gets
// PauseWriting once its buffer passes the high water mark, stops, and its
// buffer stays bounded; when the reader resumes, ResumeWriting follows and
// everything arrives.
func nStreamBackPressure(n *nt) {
	l := n.newLoop()
	const total = 4 << 20
	const chunk = 32 << 10
	var srvs serverProtos
	n.run(l, "back-pressure with a slow reader", func(co *kernel.Co) error {
		cli := &recProto{}
		srv, tr, err := testkit.Connect(co, srvs.factory(func() *recProto {
			return &recProto{discard: true, onMade: func(p *recProto) { p.tr.PauseReading() }}
		}), cli)
		if err != nil {
			return err
		}
		defer srv.Close()
		low, high := tr.GetWriteBufferLimits()
		require.Equal(n, []int{16 << 10, 64 << 10}, []int{low, high}, "rule: default water marks are 16 KiB and 64 KiB")
		require.Error(n, tr.SetWriteBufferLimits(10, 20), "rule: low above high is refused")
		require.NoError(n, tr.SetWriteBufferLimits(-1, 1000))
		low, high = tr.GetWriteBufferLimits()
		require.Equal(n, []int{1000, 4000}, []int{low, high}, "rule: high defaults to 4*low")
		require.NoError(n, tr.SetWriteBufferLimits(-1, -1))
		low, high = tr.GetWriteBufferLimits()
		require.Equal(n, []int{16 << 10, 64 << 10}, []int{low, high})

		chunkBuf := pattern(chunk)
		sent, maxBuf := 0, 0
		stalled := false
		// A well-behaved writer: write while not paused.
		for sent < total {
			if cli.paused > cli.resumed {
				maxBuf = max(maxBuf, tr.GetWriteBufferSize())
				if !stalled && len(srvs.list) == 1 {
					// First pause: the receiver is stalled; check the bound
					// holds while nothing drains, then let it read.
					stalled = true
					require.False(n, srvs.list[0].tr.IsReading(), "fixture: the receiver is paused")
					if err := settleTurns(co, 10); err != nil {
						return err
					}
					require.LessOrEqual(n, tr.GetWriteBufferSize(), high+chunk, "rule: the write buffer does not grow while the protocol is paused and nobody writes")
					require.Equal(n, 1, cli.paused, "rule: PauseWriting once per crossing of the high water mark")
					srvs.list[0].tr.ResumeReading()
				}
				if err := co.Yield(); err != nil {
					return err
				}
				continue
			}
			require.NoError(n, tr.Write(chunkBuf))
			sent += chunk
			maxBuf = max(maxBuf, tr.GetWriteBufferSize())
		}
		require.True(n, stalled, "rule: a writer facing a reader that does not read gets PauseWriting (never called)")
		require.LessOrEqual(n, maxBuf, high+chunk, "rule: a writer that stops at PauseWriting keeps the buffer within high water mark + one write")
		if err := n.waitUntil(co, "rule: after the reader resumes, everything written arrives", func() bool { return srvs.list[0].n == total }); err != nil {
			return err
		}
		if err := n.waitUntil(co, "rule: the write buffer drains", func() bool { return tr.GetWriteBufferSize() == 0 }); err != nil {
			return err
		}
		require.Equal(n, cli.paused, cli.resumed, "rule: every PauseWriting is followed by ResumeWriting once the buffer drains")
		tr.Close()
		return nil
	})
}

// nStreamProtocolPanic: a panic in DataReceived goes to the exception
// handler with the protocol and transport set, and the transport is aborted
// with the panic as ConnectionLost's error.
func nStreamProtocolPanic(n *nt) {
	l := n.newLoop()
	exc := excRecorder(l)
	n.run(l, "protocol panic", func(co *kernel.Co) error {
		cli := &recProto{}
		srv, tr, err := testkit.Connect(co, func() *recProto {
			return &recProto{onData: func(p *recProto, b []byte) { panic("boom") }}
		}, cli)
		if err != nil {
			return err
		}
		defer srv.Close()
		tr.Write([]byte("trigger"))
		if err := n.waitUntil(co, "rule: a protocol panic aborts the connection; the peer sees it end", func() bool { return cli.lost == 1 }); err != nil {
			return err
		}
		require.Len(n, *exc, 1, "rule: the panic is reported to the exception handler once")
		c := (*exc)[0]
		require.Contains(n, c.Message, "DataReceived", "rule: the report names the callback")
		require.NotNil(n, c.Protocol, "rule: the report carries the protocol")
		require.NotNil(n, c.Transport, "rule: the report carries the transport")
		var pe *kernel.PanicError
		require.ErrorAs(n, c.Err, &pe, "rule: the report's error is a *PanicError")
		require.Equal(n, "boom", pe.Value)
		sp := c.Protocol.(*recProto)
		require.Equal(n, 1, sp.lost, "rule: the panicking protocol loses its connection")
		require.ErrorAs(n, sp.lostErr, &pe, "rule: ConnectionLost carries the panic")
		return nil
	})
}

// nStreamLostOnce: Close, Abort, peer aborts and a second Close in any
// order lead to exactly one ConnectionLost, after ConnectionMade.
func nStreamLostOnce(n *nt) {
	l := n.newLoop()
	var srvs serverProtos
	n.run(l, "ConnectionLost once", func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, srvs.factory(func() *recProto { return &recProto{} }), []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		port := n.tcpPort(srv, 0)
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
				if err := n.waitUntil(co, "rule: the server accepts the connection", func() bool { return len(srvs.list) == 4 && srvs.list[3].tr != nil }); err != nil {
					return err
				}
				srvs.list[3].tr.Abort()
			}
			if err := n.waitUntil(co, fmt.Sprintf("rule: ending %d leads to ConnectionLost", i), func() bool { return cli.lost > 0 }); err != nil {
				return err
			}
			if err := settleTurns(co, 5); err != nil {
				return err
			}
			require.Equal(n, 1, cli.lost, "rule: ConnectionLost exactly once (ending %d)", i)
			require.Equal(n, "made", cli.madeOrder[0], "rule: ConnectionMade comes first")
			require.Equal(n, "lost", cli.madeOrder[len(cli.madeOrder)-1], "rule: ConnectionLost comes last")
		}
		srv.AbortClients()
		if err := n.waitUntil(co, "rule: AbortClients ends every accepted connection", func() bool {
			return len(srvs.list) == 4 && allLost(srvs.list)
		}); err != nil {
			return err
		}
		for _, s := range srvs.list {
			require.Equal(n, 1, s.lost, "rule: ConnectionLost exactly once on the server side")
		}
		return nil
	})
}

// nStreamBufferedProtocol: a BufferedProtocol receives into its own buffer,
// in reads no larger than it, and sees EOF.
func nStreamBufferedProtocol(n *nt) {
	l := n.newLoop()
	n.run(l, "buffered protocol", func(co *kernel.Co) error {
		cli := &bufProto{buf: make([]byte, 1000)}
		srv, _, err := testkit.Connect(co, func() *recProto {
			return &recProto{onMade: func(p *recProto) { p.tr.Write(pattern(100000)); p.tr.Close() }}
		}, cli)
		if err != nil {
			return err
		}
		defer srv.Close()
		if err := n.waitUntil(co, "rule: a buffered protocol sees the connection end", func() bool { return cli.lost == 1 }); err != nil {
			return err
		}
		require.True(n, cli.eof, "rule: EOFReceived before ConnectionLost")
		require.True(n, bytes.Equal(pattern(100000), cli.got.Bytes()), "rule: every byte arrives through GetBuffer/BufferUpdated, in order")
		require.GreaterOrEqual(n, len(cli.hints), 100, "rule: reads are bounded by the protocol's buffer")
		return nil
	})
}

// nStreamWritelines: Writelines sends the buffers in order, more of them
// than one sendmsg takes, without modifying the caller's slice.
func nStreamWritelines(n *nt) {
	l := n.newLoop()
	n.run(l, "writelines", func(co *kernel.Co) error {
		cli := &recProto{keepOpen: true}
		srv, tr, err := testkit.Connect(co, newEcho, cli)
		if err != nil {
			return err
		}
		defer srv.Close()
		var want bytes.Buffer
		var bufs [][]byte
		for i := range 150 { // more buffers than one sendmsg takes
			b := pattern(i * 13)
			bufs = append(bufs, b)
			want.Write(b)
		}
		saved := append([][]byte(nil), bufs...)
		require.NoError(n, tr.Writelines(bufs))
		require.Equal(n, saved, bufs, "rule: Writelines does not modify the caller's slice")
		require.NoError(n, tr.Writelines([][]byte{[]byte("tail"), nil}))
		want.WriteString("tail")
		tr.WriteEOF()
		if err := n.waitUntil(co, "rule: the echo of Writelines ends with EOF", func() bool { return cli.eofs == 1 }); err != nil {
			return err
		}
		require.True(n, bytes.Equal(want.Bytes(), cli.data.Bytes()), "rule: Writelines sends every buffer, in order")
		tr.Close()
		return nil
	})
}

// unixEcho makes one echo exchange with a Unix server on name.
func (n *nt) unixEcho(co *kernel.Co, name string) error {
	srv, err := kernel.CreateUnixServer(co, newEcho, name, nil)
	if err != nil {
		return err
	}
	cli := &recProto{keepOpen: true}
	tr, _, err := kernel.CreateUnixConnection(co, func() *recProto { return cli }, name, nil)
	if err != nil {
		srv.Close()
		return err
	}
	tr.Write([]byte("unix " + name))
	tr.WriteEOF()
	if err := n.waitUntil(co, "rule: a Unix stream echo ends with EOF", func() bool { return cli.eofs == 1 }); err != nil {
		return err
	}
	require.Equal(n, "unix "+name, cli.data.String(), "rule: bytes over a Unix stream arrive intact")
	tr.Close()
	srv.Close()
	return srv.WaitClosed(co)
}

// nStreamUnixPath: a Unix server on a path replaces a stale socket file
// and removes its file on close.
func nStreamUnixPath(n *nt) {
	l := n.newLoop()
	path := filepath.Join(n.tempDir(), "srv.sock")
	n.run(l, "unix server on a path", func(co *kernel.Co) error {
		// A stale socket file left by an earlier process is replaced.
		stale, err := kernel.NewSocket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		n.fixture("socket", err)
		n.fixture("bind stale socket", stale.Bind(unixAddr(path)))
		stale.Close()
		if err := n.unixEcho(co, path); err != nil {
			return err
		}
		_, err = os.Stat(path)
		require.True(n, errors.Is(err, os.ErrNotExist), "rule: a Unix server removes its socket file on close: %v", err)
		return nil
	})
}

// nStreamUnixAbstract: Unix servers on abstract names, written "@name" and
// "\x00name", are in the abstract namespace (no file; a plain client that
// dials the abstract name reaches them) and leave nothing behind: once
// closed, the name refuses.
func nStreamUnixAbstract(n *nt) {
	l := n.newLoop()
	at := abstractName("stream")
	nul := "\x00" + abstractName("stream")[1:]
	n.run(l, "unix server on abstract names", func(co *kernel.Co) error {
		for _, name := range []string{at, nul} {
			srv, err := kernel.CreateUnixServer(co, newEcho, name, nil)
			if err != nil {
				return err
			}
			_, err = os.Lstat("@" + name[1:])
			require.True(n, errors.Is(err, os.ErrNotExist), "rule: an abstract name creates no file: %v", err)
			// x/sys writes "@" as the abstract namespace's leading NUL.
			c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			n.fixture("socket", err)
			n.own(c)
			require.NoError(n, unix.Connect(c, &unix.SockaddrUnix{Name: "@" + name[1:]}), "rule: a server on an abstract name is reachable in the abstract namespace")
			n.closeFD(c)
			srv.Close()
			if err := srv.WaitClosed(co); err != nil {
				return err
			}
			if err := n.unixEcho(co, name); err != nil {
				return err
			}
		}
		_, _, err := kernel.CreateUnixConnection(co, func() *recProto { return &recProto{} }, at, nil)
		require.ErrorIs(n, err, syscall.ECONNREFUSED, "rule: a closed abstract-name server refuses connections")
		return nil
	})
}

// nStreamExtraInfo: peername, sockname and socket are known; unknown names
// are not; SetProtocol switches who hears ConnectionLost.
func nStreamExtraInfo(n *nt) {
	l := n.newLoop()
	n.run(l, "extra info and SetProtocol", func(co *kernel.Co) error {
		srv, err := kernel.CreateServer(co, newEcho, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		port := n.tcpPort(srv, 0)
		tr, p, err := kernel.CreateConnection(co, func() *recProto { return &recProto{} }, "127.0.0.1", port, nil)
		if err != nil {
			return err
		}
		peer, ok := tr.GetExtraInfo("peername")
		require.True(n, ok, "rule: peername is known")
		require.Equal(n, "127.0.0.1:"+port, peer.(fmt.Stringer).String())
		_, ok = tr.GetExtraInfo("sockname")
		require.True(n, ok, "rule: sockname is known")
		s, ok := tr.GetExtraInfo("socket")
		require.True(n, ok, "rule: socket is known")
		sock := s.(*kernel.Socket)
		nd, err := sock.GetsockoptInt(syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
		require.NoError(n, err)
		require.NotZero(n, nd, "rule: TCP_NODELAY is on by default")
		_, ok = tr.GetExtraInfo("nonsense")
		require.False(n, ok, "rule: unknown extra info is not known")
		require.Same(n, p, tr.GetProtocol())
		other := &recProto{}
		tr.SetProtocol(other)
		require.Same(n, other, tr.GetProtocol(), "rule: SetProtocol switches the protocol")
		tr.Close()
		if err := n.waitUntil(co, "rule: the new protocol hears ConnectionLost", func() bool { return other.lost == 1 }); err != nil {
			return err
		}
		require.Equal(n, 0, p.lost, "rule: the old protocol hears nothing after SetProtocol")
		return nil
	})
}

// nStreamWriteAfterClose: writing nothing is fine; writing to a closed
// transport fails with ErrTransportClosed.
func nStreamWriteAfterClose(n *nt) {
	l := n.newLoop()
	n.run(l, "write after close", func(co *kernel.Co) error {
		cli := &recProto{}
		srv, tr, err := testkit.Connect(co, newEcho, cli)
		if err != nil {
			return err
		}
		defer srv.Close()
		require.NoError(n, tr.Write(nil), "rule: writing nothing succeeds")
		tr.Close()
		require.ErrorIs(n, tr.Write([]byte("x")), kernel.ErrTransportClosed, "rule: Write on a closed transport fails")
		require.ErrorIs(n, tr.Writelines([][]byte{[]byte("x")}), kernel.ErrTransportClosed, "rule: Writelines on a closed transport fails")
		return n.waitUntil(co, "rule: Close ends in ConnectionLost", func() bool { return cli.lost == 1 })
	})
}
