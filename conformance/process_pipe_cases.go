package conformance

import (
	"os"
	"path/filepath"
	"syscall"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/sdk"
)

// Pipe transports: ConnectReadPipe and ConnectWritePipe on pipes, FIFOs
// and sockets (the pty is in process/pty).
var processPipeCases = []ncase{
	{name: "process/pipe/read-eof", run: pPipeReadEOF},
	{name: "process/pipe/write-flow-control", run: pPipeFlowControl},
	{name: "process/pipe/reader-gone", op: sdk.CapWatch, run: pPipeReaderGone},
	{name: "process/pipe/epipe-on-write", run: pPipeEPIPE},
	{name: "process/pipe/regular-file-refused", run: pPipeRegularFile},
	{name: "process/pipe/fifo", run: pPipeFIFO},
	{name: "process/pipe/socket", run: pPipeSocket},
}

// osPipe returns a pipe's ends as files, closed when the case ends (a
// second close of an end a transport closed is harmless).
func (n *nt) osPipe() (r, w *os.File) {
	r, w, err := os.Pipe()
	n.fixture("pipe", err)
	n.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// pipeProto is a write pipe's protocol: it records flow control and the
// end.
type pipeProto struct {
	made, lost      int
	lostErr         error
	paused, resumed int
}

func (p *pipeProto) ConnectionMade(kernel.BaseTransport) { p.made++ }
func (p *pipeProto) ConnectionLost(err error)            { p.lost++; p.lostErr = err }
func (p *pipeProto) PauseWriting()                       { p.paused++ }
func (p *pipeProto) ResumeWriting()                      { p.resumed++ }

// pPipeReadEOF: what is written arrives; the writer's close is EOF, then
// ConnectionLost(nil), and the transport closes the pipe it owns.
func pPipeReadEOF(n *nt) {
	l := n.newLoop()
	r, w := n.osPipe()
	n.run(l, "read pipe", func(co *kernel.Co) error {
		p := &recProto{keepOpen: true}
		tr, got, err := kernel.ConnectReadPipe(co, func() *recProto { return p }, r)
		if err != nil {
			return err
		}
		require.Same(n, p, got)
		require.Equal(n, 1, p.made, "rule: ConnectionMade has run when ConnectReadPipe returns")
		assert.True(n, tr.IsReading())
		v, ok := tr.GetExtraInfo("pipe")
		assert.True(n, ok && v == r, "rule: extra info \"pipe\" is the file given")
		go func() { w.Write([]byte("hello pipe")); w.Close() }()
		if err := n.waitUntil(co, "rule: the writer's close ends the read transport", func() bool { return p.lost > 0 }); err != nil {
			return err
		}
		assert.Equal(n, "hello pipe", p.data.String())
		assert.Equal(n, []string{"made", "eof", "lost"}, p.madeOrder, "rule: EOFReceived, then ConnectionLost, whatever EOFReceived answered")
		assert.NoError(n, p.lostErr)
		assert.ErrorIs(n, r.Close(), os.ErrClosed, "rule: the transport closed the pipe it owned")
		return nil
	})
}

// pPipeFlowControl: a write pipe buffers what the pipe refuses, pauses the
// protocol over the high water mark and resumes it under the low one;
// WriteEOF closes it once flushed.
func pPipeFlowControl(n *nt) {
	l := n.newLoop()
	r, w := n.osPipe()
	n.run(l, "write pipe", func(co *kernel.Co) error {
		wp := &pipeProto{}
		wt, _, err := kernel.ConnectWritePipe(co, func() *pipeProto { return wp }, w)
		if err != nil {
			return err
		}
		assert.True(n, wt.CanWriteEOF())
		const size = 1 << 20
		require.NoError(n, wt.Write(pattern(size)))
		assert.Equal(n, 1, wp.paused, "rule: a buffer over the high water mark pauses the protocol")
		assert.Greater(n, wt.GetWriteBufferSize(), 0, "rule: what the pipe refused is buffered")
		rp := &recProto{}
		if _, _, err := kernel.ConnectReadPipe(co, func() *recProto { return rp }, r); err != nil {
			return err
		}
		if err := n.waitUntil(co, "rule: the protocol resumes once the buffer drains", func() bool { return wp.resumed == 1 }); err != nil {
			return err
		}
		require.NoError(n, wt.WriteEOF())
		assert.ErrorIs(n, wt.Write([]byte("x")), kernel.ErrWriteAfterEOF, "rule: no write after WriteEOF")
		if err := n.waitUntil(co, "rule: WriteEOF flushes, then closes: the reader sees EOF", func() bool { return rp.lost > 0 && wp.lost > 0 }); err != nil {
			return err
		}
		assert.Equal(n, size, rp.data.Len(), "rule: every buffered byte is written before the close")
		assert.Equal(n, pattern(size), rp.data.Bytes())
		assert.NoError(n, wp.lostErr)
		return nil
	})
}

// pPipeReaderGone: a write pipe notices that its reader went away without
// writing: quietly with nothing buffered, with EPIPE when data was lost.
func pPipeReaderGone(n *nt) {
	l := n.newLoop()
	n.run(l, "reader goes away", func(co *kernel.Co) error {
		r, w := n.osPipe()
		wp := &pipeProto{}
		if _, _, err := kernel.ConnectWritePipe(co, func() *pipeProto { return wp }, w); err != nil {
			return err
		}
		r.Close()
		if err := n.waitUntil(co, "rule: the reader's close ends an idle write pipe", func() bool { return wp.lost > 0 }); err != nil {
			return err
		}
		assert.NoError(n, wp.lostErr, "rule: nothing was lost, so ConnectionLost(nil)")

		r, w = n.osPipe()
		wp = &pipeProto{}
		wt, _, err := kernel.ConnectWritePipe(co, func() *pipeProto { return wp }, w)
		if err != nil {
			return err
		}
		require.NoError(n, wt.Write(pattern(1<<20)))
		require.Greater(n, wt.GetWriteBufferSize(), 0)
		r.Close()
		if err := n.waitUntil(co, "rule: the reader's close ends a write pipe with data buffered", func() bool { return wp.lost > 0 }); err != nil {
			return err
		}
		assert.ErrorIs(n, wp.lostErr, syscall.EPIPE, "rule: buffered data lost is reported as EPIPE")
		return nil
	})
}

// pPipeEPIPE: on a driver without watching, the reader's absence is found
// by the next write: EPIPE, and the process (which a SIGPIPE would have
// killed) carries on.
func pPipeEPIPE(n *nt) {
	l := n.newLoop(sdk.CapWatch)
	r, w := n.osPipe()
	n.run(l, "write to a closed pipe", func(co *kernel.Co) error {
		wp := &pipeProto{}
		wt, _, err := kernel.ConnectWritePipe(co, func() *pipeProto { return wp }, w)
		if err != nil {
			return err
		}
		r.Close()
		err = wt.Write([]byte("into the void"))
		if err == nil {
			// Accepted before the failure was seen: it surfaces in
			// ConnectionLost instead.
			if err := n.waitUntil(co, "rule: the failed write ends the transport", func() bool { return wp.lost > 0 }); err != nil {
				return err
			}
			err = wp.lostErr
		}
		assert.ErrorIs(n, err, syscall.EPIPE, "rule: a write to a pipe without a reader fails with EPIPE")
		if err := n.waitUntil(co, "rule: the transport ends", func() bool { return wp.lost > 0 }); err != nil {
			return err
		}
		assert.ErrorIs(n, wp.lostErr, syscall.EPIPE)
		return nil
	})
}

// pPipeRegularFile: a regular file is refused, clearly, and left open.
func pPipeRegularFile(n *nt) {
	l := n.newLoop()
	f, err := os.Create(filepath.Join(n.tempDir(), "regular"))
	n.fixture("create file", err)
	defer f.Close()
	n.run(l, "regular file", func(co *kernel.Co) error {
		_, _, err := kernel.ConnectReadPipe(co, func() *recProto { return &recProto{} }, f)
		require.Error(n, err, "rule: a regular file is not a pipe")
		assert.ErrorIs(n, err, kernel.ErrNotPipe)
		assert.ErrorIs(n, err, kernel.ErrInvalidArgument)
		assert.Contains(n, err.Error(), "regular file")
		assert.Contains(n, err.Error(), f.Name(), "rule: the error names the file")
		_, _, err = kernel.ConnectWritePipe(co, func() *pipeProto { return &pipeProto{} }, f)
		assert.ErrorIs(n, err, kernel.ErrNotPipe)
		_, err = f.Write([]byte("still mine"))
		assert.NoError(n, err, "rule: a refused file stays open, the caller's")
		return nil
	})
}

// pPipeFIFO: a named pipe works like a pipe.
func pPipeFIFO(n *nt) {
	l := n.newLoop()
	path := filepath.Join(n.tempDir(), "fifo")
	n.fixture("mkfifo", unix.Mkfifo(path, 0o600))
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	n.fixture("open fifo for reading", err)
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	n.fixture("open fifo for writing", err)
	n.Cleanup(func() { r.Close(); w.Close() })
	n.pipeRoundTrip(l, r, w, "fifo")
}

// pPipeSocket: a connected stream socket's ends work as pipes.
func pPipeSocket(n *nt) {
	l := n.newLoop()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	n.fixture("socketpair", err)
	r, w := os.NewFile(uintptr(p[0]), "sock-r"), os.NewFile(uintptr(p[1]), "sock-w")
	n.Cleanup(func() { r.Close(); w.Close() })
	n.pipeRoundTrip(l, r, w, "socket")
}

// pipeRoundTrip sends 4 MiB from a write pipe transport on w to a read pipe
// transport on r.
func (n *nt) pipeRoundTrip(l *kernel.Loop, r, w *os.File, what string) {
	n.run(l, what+" round trip", func(co *kernel.Co) error {
		rp := &recProto{}
		if _, _, err := kernel.ConnectReadPipe(co, func() *recProto { return rp }, r); err != nil {
			return err
		}
		wp := &pipeProto{}
		wt, _, err := kernel.ConnectWritePipe(co, func() *pipeProto { return wp }, w)
		if err != nil {
			return err
		}
		const size = 4 << 20
		require.NoError(n, wt.Write(pattern(size)))
		require.NoError(n, wt.WriteEOF())
		if err := n.waitUntil(co, "rule: the "+what+"'s reader sees every byte and then EOF", func() bool { return rp.lost > 0 }); err != nil {
			return err
		}
		assert.Equal(n, pattern(size), rp.data.Bytes(), "rule: bytes arrive intact through a %s", what)
		assert.NoError(n, rp.lostErr)
		if err := n.waitUntil(co, "rule: the writer ends", func() bool { return wp.lost > 0 }); err != nil {
			return err
		}
		assert.NoError(n, wp.lostErr)
		return nil
	})
}
