package streams

import (
	"io"

	"github.com/loopkernel/loopkernel/kernel"
)

// IOReader returns r as an io.Reader for the coroutine co, so Go code that
// takes an io.Reader (bufio.Scanner, io.Copy, json.Decoder, a decompressor)
// reads the stream from inside a task. Read copies what is buffered into p
// with no intermediate slice, waiting on the loop for at least one byte;
// at the end of the stream it returns io.EOF. Like every Reader method it
// is for co's task alone: the task suspends while it waits.
func (r *Reader) IOReader(co *kernel.Co) io.Reader { return ioReader{r, co} }

type ioReader struct {
	r  *Reader
	co *kernel.Co
}

func (x ioReader) Read(p []byte) (int, error) {
	r := x.r
	if r.err != nil {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if r.Buffered() == 0 && !r.eof {
		if err := r.waitForData(x.co, "read"); err != nil {
			return 0, err
		}
	}
	if r.Buffered() == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.unread())
	r.consume(n)
	r.maybeResume()
	return n, nil
}

// IOWriter returns w as an io.Writer for the coroutine co: each Write
// queues p on the transport and then drains (asyncio's write followed by
// await drain()), so a writer faster than the peer is held back instead of
// buffering without bound. Go code that takes an io.Writer (fmt.Fprintf,
// io.Copy, an encoder) then writes the stream from inside a task.
func (w *Writer) IOWriter(co *kernel.Co) io.Writer { return ioWriter{w, co} }

type ioWriter struct {
	w  *Writer
	co *kernel.Co
}

func (x ioWriter) Write(p []byte) (int, error) {
	if err := x.w.Write(p); err != nil {
		return 0, err
	}
	if err := x.w.Drain(x.co); err != nil {
		// The transport took p; the connection failed after.
		return len(p), err
	}
	return len(p), nil
}
