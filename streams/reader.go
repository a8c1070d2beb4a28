// Package streams is asyncio's high-level streams API on the loopkernel
// loop: OpenConnection and StartServer hand a coroutine a Reader and a
// Writer instead of a protocol and a transport, so it can write
// "line, err := r.Readline(co)" where a protocol would keep a state machine.
//
// The layer is thin on purpose, as in asyncio: a Protocol (the kernel calls
// it) feeds received bytes into the Reader's buffer and turns the
// transport's flow-control callbacks into something Drain can wait on; the
// Writer forwards to the transport. Everything runs on the loop's goroutine.
package streams

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/loopkernel/loopkernel/kernel"
)

// DefaultLimit is the default buffer limit of a Reader, asyncio's 64 KiB.
const DefaultLimit = 64 << 10

// ErrConcurrentRead: a second coroutine called a Reader method while one was
// already waiting for data; a Reader has one consumer at a time.
var ErrConcurrentRead = errors.New("another coroutine is already waiting for incoming data")

// IncompleteReadError is returned when EOF arrives before a read is
// satisfied (asyncio.IncompleteReadError). Partial holds the bytes that did
// arrive, which the Reader no longer holds. It matches io.ErrUnexpectedEOF
// with errors.Is.
type IncompleteReadError struct {
	Partial []byte
	// Expected is the size Readexactly wanted, or -1 for Readuntil, which
	// had no size to expect.
	Expected int
}

func (e *IncompleteReadError) Error() string {
	if e.Expected < 0 {
		return fmt.Sprintf("%d bytes read on a total of undefined expected bytes", len(e.Partial))
	}
	return fmt.Sprintf("%d bytes read on a total of %d expected bytes", len(e.Partial), e.Expected)
}

// Is makes errors.Is(err, io.ErrUnexpectedEOF) true.
func (e *IncompleteReadError) Is(target error) bool { return target == io.ErrUnexpectedEOF }

// LimitOverrunError is returned when a separator was not found within the
// Reader's limit (asyncio.LimitOverrunError). Readuntil leaves the data in
// the buffer; Consumed is how many bytes to drop to get past it. Readline
// drops them itself before returning this error.
type LimitOverrunError struct {
	Msg      string
	Consumed int
}

func (e *LimitOverrunError) Error() string { return e.Msg }

// Reader is the read half of a stream (asyncio.StreamReader): a buffer the
// protocol fills and coroutines drain. When the buffer holds more than
// twice the limit, reading from the transport pauses until a read brings it
// back to the limit, so a slow consumer holds the peer back instead of
// buffering without bound.
//
// Every slice a Reader returns is the caller's own copy. A Reader is for
// one coroutine at a time, on the loop's goroutine.
type Reader struct {
	limit     int
	buf       []byte // unread bytes are buf[off:]
	off       int
	eof       bool
	err       error
	waiter    *kernel.Future[struct{}]
	transport kernel.ReadTransport
	paused    bool
}

// NewReader returns an empty reader with the given limit (<= 0:
// DefaultLimit). Feed it with FeedData and FeedEOF, or let a connection
// made by OpenConnection or StartServer do that.
func NewReader(limit int) *Reader {
	if limit <= 0 {
		limit = DefaultLimit
	}
	return &Reader{limit: limit}
}

// Limit returns the reader's buffer limit.
func (r *Reader) Limit() int { return r.limit }

func (r *Reader) unread() []byte { return r.buf[r.off:] }

// Buffered returns how many bytes are buffered and unread.
func (r *Reader) Buffered() int { return len(r.buf) - r.off }

// consume drops n bytes from the front of the buffer.
func (r *Reader) consume(n int) {
	r.off += n
	if r.off == len(r.buf) {
		r.buf, r.off = r.buf[:0], 0
	}
}

// take returns a copy of the first n unread bytes and drops them.
func (r *Reader) take(n int) []byte {
	out := bytes.Clone(r.unread()[:n])
	r.consume(n)
	r.maybeResume()
	return out
}

// SetTransport tells the reader which transport to pause when its buffer
// runs over.
func (r *Reader) SetTransport(t kernel.ReadTransport) { r.transport = t }

// Exception returns the error set with SetException, or nil.
func (r *Reader) Exception() error { return r.err }

// SetException makes every later read fail with err (the connection
// failed); a coroutine waiting for data wakes with it.
func (r *Reader) SetException(err error) {
	r.err = err
	if w := r.waiter; w != nil && !w.Done() {
		w.SetException(err)
	}
}

func (r *Reader) wakeup() {
	if w := r.waiter; w != nil && !w.Done() {
		w.SetResult(struct{}{})
	}
}

// FeedEOF records that no more data will come.
func (r *Reader) FeedEOF() {
	r.eof = true
	r.wakeup()
}

// AtEOF reports whether the buffer is empty and EOF was fed.
func (r *Reader) AtEOF() bool { return r.eof && r.Buffered() == 0 }

// FeedData appends a copy of b to the buffer (b may be reused when it
// returns) and pauses the transport if the buffer is now over twice the
// limit. Data fed after FeedEOF is dropped.
func (r *Reader) FeedData(b []byte) {
	if r.eof || len(b) == 0 {
		return
	}
	if r.off > 0 && len(r.buf)+len(b) > cap(r.buf) {
		n := copy(r.buf, r.buf[r.off:])
		r.buf, r.off = r.buf[:n], 0
	}
	r.buf = append(r.buf, b...)
	r.wakeup()
	if r.transport != nil && !r.paused && r.Buffered() > 2*r.limit {
		if err := r.transport.PauseReading(); err != nil {
			// A transport that cannot pause is not asked again.
			r.transport = nil
		} else {
			r.paused = true
		}
	}
}

// maybeResume resumes a paused transport once the buffer is back within
// the limit.
func (r *Reader) maybeResume() {
	if r.paused && r.Buffered() <= r.limit {
		r.paused = false
		if r.transport != nil {
			r.transport.ResumeReading()
		}
	}
}

// waitForData suspends co until data or EOF is fed or the connection
// fails. A transport paused by back-pressure is resumed first: the reader
// wants more than it holds, so holding the peer back would deadlock.
func (r *Reader) waitForData(co *kernel.Co, op string) error {
	if r.waiter != nil {
		return fmt.Errorf("%s: %w", op, ErrConcurrentRead)
	}
	if r.paused {
		r.paused = false
		if r.transport != nil {
			r.transport.ResumeReading()
		}
	}
	w := kernel.CreateFuture[struct{}](co.Loop())
	r.waiter = w
	_, err := w.Await(co)
	r.waiter = nil
	return err
}

// Read reads up to n bytes, waiting until at least one is buffered
// (asyncio: StreamReader.read). At EOF with nothing buffered it returns
// io.EOF. n < 0 reads until EOF and returns everything, with a nil error.
func (r *Reader) Read(co *kernel.Co, n int) ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	if n == 0 {
		return []byte{}, nil
	}
	if n < 0 {
		var all []byte
		for {
			b, err := r.Read(co, r.limit)
			if err == io.EOF {
				return all, nil
			}
			if err != nil {
				return all, err
			}
			all = append(all, b...)
		}
	}
	if r.Buffered() == 0 && !r.eof {
		if err := r.waitForData(co, "read"); err != nil {
			return nil, err
		}
	}
	if r.Buffered() == 0 {
		return nil, io.EOF
	}
	return r.take(min(n, r.Buffered())), nil
}

// Readexactly reads exactly n bytes (asyncio: StreamReader.readexactly). If
// EOF comes first, it returns an *IncompleteReadError holding what arrived.
func (r *Reader) Readexactly(co *kernel.Co, n int) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("readexactly: negative size %d: %w", n, kernel.ErrInvalidArgument)
	}
	if r.err != nil {
		return nil, r.err
	}
	if n == 0 {
		return []byte{}, nil
	}
	for r.Buffered() < n {
		if r.eof {
			partial := r.take(r.Buffered())
			return nil, &IncompleteReadError{Partial: partial, Expected: n}
		}
		if err := r.waitForData(co, "readexactly"); err != nil {
			return nil, err
		}
	}
	return r.take(n), nil
}

// Readline reads one line, through its "\n" (asyncio:
// StreamReader.readline). At EOF it returns the last, unterminated line
// with a nil error, and io.EOF once nothing is left. A line longer than
// the limit is dropped from the buffer (as far as it has arrived) and
// reported as a *LimitOverrunError.
func (r *Reader) Readline(co *kernel.Co) ([]byte, error) {
	const sep = "\n"
	line, err := r.Readuntil(co, []byte(sep))
	if err == nil {
		return line, nil
	}
	var inc *IncompleteReadError
	if errors.As(err, &inc) {
		if len(inc.Partial) == 0 {
			return nil, io.EOF
		}
		return inc.Partial, nil
	}
	var over *LimitOverrunError
	if errors.As(err, &over) {
		if bytes.HasPrefix(r.unread()[over.Consumed:], []byte(sep)) {
			r.consume(over.Consumed + len(sep))
		} else {
			r.consume(r.Buffered())
		}
		r.maybeResume()
	}
	return nil, err
}

// Readuntil reads up to and including the first occurrence of sep
// (asyncio: StreamReader.readuntil). If EOF comes first, it returns an
// *IncompleteReadError holding the rest of the stream. If no sep shows up
// within the limit, it returns a *LimitOverrunError and leaves the data in
// the buffer.
func (r *Reader) Readuntil(co *kernel.Co, sep []byte) ([]byte, error) {
	seplen := len(sep)
	if seplen == 0 {
		return nil, fmt.Errorf("readuntil: empty separator: %w", kernel.ErrInvalidArgument)
	}
	if r.err != nil {
		return nil, r.err
	}
	// offset is where the next search starts: everything before it has
	// been searched already and cannot begin a separator, so a reader fed
	// byte by byte does not rescan its whole buffer each time.
	offset := 0
	var isep int
	for {
		buf := r.unread()
		if len(buf)-offset >= seplen {
			if i := bytes.Index(buf[offset:], sep); i >= 0 {
				isep = offset + i
				break
			}
			offset = len(buf) + 1 - seplen
			if offset > r.limit {
				return nil, &LimitOverrunError{Msg: "separator is not found, and chunk exceeds the limit", Consumed: offset}
			}
		}
		if r.eof {
			partial := r.take(len(buf))
			return nil, &IncompleteReadError{Partial: partial, Expected: -1}
		}
		if err := r.waitForData(co, "readuntil"); err != nil {
			return nil, err
		}
	}
	if isep > r.limit {
		return nil, &LimitOverrunError{Msg: "separator is found, but chunk is longer than limit", Consumed: isep}
	}
	return r.take(isep + seplen), nil
}
