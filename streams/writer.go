package streams

import (
	"github.com/loopkernel/loopkernel/kernel"
)

// Writer is the write half of a stream (asyncio.StreamWriter). Write never
// blocks: the transport sends what the socket takes and buffers the rest.
// Call Drain after writing to wait while that buffer is over its high water
// mark, which is how a fast writer is held to the pace of the peer.
type Writer struct {
	t      kernel.Transport
	proto  *protocol
	reader *Reader
}

// Transport returns the underlying transport.
func (w *Writer) Transport() kernel.Transport { return w.t }

// Write queues b on the transport; b may be reused when it returns.
func (w *Writer) Write(b []byte) error { return w.t.Write(b) }

// Writelines queues the buffers in order.
func (w *Writer) Writelines(bufs [][]byte) error { return w.t.Writelines(bufs) }

// WriteEOF closes the write side once the buffer is flushed.
func (w *Writer) WriteEOF() error { return w.t.WriteEOF() }

// CanWriteEOF reports whether the transport supports WriteEOF.
func (w *Writer) CanWriteEOF() bool { return w.t.CanWriteEOF() }

// Close closes the transport after flushing its buffer; WaitClosed waits
// for that to finish.
func (w *Writer) Close() error { return w.t.Close() }

// IsClosing reports whether the transport is closing or closed.
func (w *Writer) IsClosing() bool { return w.t.IsClosing() }

// GetExtraInfo returns transport information ("peername", "sockname",
// "socket").
func (w *Writer) GetExtraInfo(name string) (any, bool) { return w.t.GetExtraInfo(name) }

// WaitClosed waits until the connection is closed; it returns the error
// the connection ended with, if any.
func (w *Writer) WaitClosed(co *kernel.Co) error {
	_, err := w.proto.closed.Await(co)
	return err
}

// Drain waits until it is appropriate to write more (asyncio:
// StreamWriter.drain): at once while the transport's buffer is under its
// high water mark, otherwise until it drains below the low one. It returns
// the error the connection failed with, or an error wrapping ECONNRESET if
// the connection was lost.
func (w *Writer) Drain(co *kernel.Co) error {
	if w.reader != nil {
		if err := w.reader.Exception(); err != nil {
			return err
		}
	}
	if w.t.IsClosing() {
		// Let a pending ConnectionLost run, so its error (or the lost
		// connection) is what Drain reports.
		if err := co.Yield(); err != nil {
			return err
		}
		if w.reader != nil {
			if err := w.reader.Exception(); err != nil {
				return err
			}
		}
	}
	return w.proto.drain(co)
}
