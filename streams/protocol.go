package streams

import (
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/loopkernel/loopkernel/kernel"
)

// ClientConnected is StartServer's per-connection coroutine (asyncio's
// client_connected_cb). It runs as a task of its own; if it returns an
// error (other than a cancellation), the connection is closed and the error
// goes to the loop's exception handler. An error that is io.EOF (or wraps
// it) is the peer having finished, the ordinary end of a Go read loop: the
// connection is closed and nothing is reported. Returning nil leaves the
// connection as it is: close the Writer to end it.
type ClientConnected func(co *kernel.Co, r *Reader, w *Writer) error

// protocol connects a transport to a Reader (asyncio.StreamReaderProtocol
// with its FlowControlMixin): received bytes go into the reader, EOF and
// errors end it, and the transport's PauseWriting and ResumeWriting gate
// Writer.Drain.
type protocol struct {
	loop      *kernel.Loop
	reader    *Reader
	transport kernel.Transport
	onConnect ClientConnected // server side only
	writer    *Writer

	closed *kernel.Future[struct{}] // done when the connection is lost

	writePaused bool
	lost        bool
	drainers    []*kernel.Future[struct{}]
}

var (
	_ kernel.Protocol         = (*protocol)(nil)
	_ kernel.WriteFlowControl = (*protocol)(nil)
)

func newProtocol(l *kernel.Loop, r *Reader, onConnect ClientConnected) *protocol {
	return &protocol{loop: l, reader: r, onConnect: onConnect, closed: kernel.CreateFuture[struct{}](l)}
}

// ConnectionMade starts the ClientConnected task on the server side.
func (p *protocol) ConnectionMade(t kernel.BaseTransport) {
	tr, ok := t.(kernel.Transport)
	if !ok {
		panic(fmt.Sprintf("streams: a stream protocol got a %T, not a kernel.Transport", t))
	}
	p.transport = tr
	p.reader.SetTransport(tr)
	p.writer = &Writer{t: tr, proto: p, reader: p.reader}
	if p.onConnect == nil {
		return
	}
	cb, r, w := p.onConnect, p.reader, p.writer
	task, err := kernel.CreateTask(p.loop, func(co *kernel.Co) (struct{}, error) {
		return struct{}{}, cb(co, r, w)
	})
	if err != nil {
		tr.Abort()
		return
	}
	task.AddDoneCallback(func(*kernel.Task[struct{}]) {
		err := task.Err()
		if err == nil || task.Cancelled() {
			return
		}
		tr.Close()
		if errors.Is(err, io.EOF) {
			return
		}
		p.loop.CallExceptionHandler(kernel.ErrorContext{
			Message:   "Unhandled error in client_connected_cb",
			Err:       err,
			Future:    task,
			Transport: tr,
			Protocol:  p,
		})
	})
}

// ConnectionLost ends the reader (EOF, or err) and wakes every waiter.
func (p *protocol) ConnectionLost(err error) {
	if err == nil {
		p.reader.FeedEOF()
		p.closed.SetResult(struct{}{})
	} else {
		p.reader.SetException(err)
		p.closed.SetException(err)
	}
	p.lost = true
	if !p.writePaused {
		return
	}
	for _, d := range p.drainers {
		if d.Done() {
			continue
		}
		if err == nil {
			d.SetResult(struct{}{})
		} else {
			d.SetException(err)
		}
	}
	p.drainers = p.drainers[:0]
}

// DataReceived copies b into the reader.
func (p *protocol) DataReceived(b []byte) { p.reader.FeedData(b) }

// EOFReceived feeds EOF and keeps the transport open, so the Writer can
// still send after the peer has finished (half-close).
func (p *protocol) EOFReceived() bool {
	p.reader.FeedEOF()
	return true
}

// PauseWriting is the transport saying its buffer is over the high mark.
func (p *protocol) PauseWriting() { p.writePaused = true }

// ResumeWriting releases every Drain waiting.
func (p *protocol) ResumeWriting() {
	p.writePaused = false
	for _, d := range p.drainers {
		if !d.Done() {
			d.SetResult(struct{}{})
		}
	}
	p.drainers = p.drainers[:0]
}

// drain waits while writing is paused.
func (p *protocol) drain(co *kernel.Co) error {
	if p.lost {
		return fmt.Errorf("drain: connection lost: %w", syscall.ECONNRESET)
	}
	if !p.writePaused {
		return nil
	}
	d := kernel.CreateFuture[struct{}](p.loop)
	p.drainers = append(p.drainers, d)
	_, err := d.Await(co)
	return err
}
