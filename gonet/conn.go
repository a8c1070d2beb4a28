package gonet

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/loopkernel/loopkernel/kernel"
)

// Buffer bounds of a Conn. A reader more than readHigh bytes behind pauses
// the transport's reading until it is back under readLow; a writer more
// than writeHigh bytes ahead of the loop blocks. They match the kernel
// transport's default write water marks in spirit: enough to keep a
// connection busy, small enough that ten thousand idle connections stay
// cheap (an idle Conn holds no buffer at all).
const (
	readHigh  = 256 << 10
	readLow   = 64 << 10
	writeHigh = 256 << 10
	// keepCap is the largest buffer an emptied Conn keeps for reuse.
	keepCap = 64 << 10
)

// errWriteShut is what Write returns after CloseWrite, as a TCP socket
// whose write side is shut answers EPIPE.
var errWriteShut = errors.New("gonet: write after CloseWrite")

// Conn is a net.Conn over a loop's stream transport. Its methods may be
// called from any goroutine except the loop's own (its callbacks and
// tasks), which they would block; several goroutines may call them at
// once, as net.Conn allows.
type Conn struct {
	loop         *kernel.Loop
	laddr, raddr net.Addr
	network      string

	// t is set in ConnectionMade and used on the loop's goroutine only.
	t kernel.Transport

	mu       sync.Mutex
	rbuf     []byte // received, unread: rbuf[roff:]
	roff     int
	rerr     error // io.EOF or the connection's error, once set
	rpaused  bool  // the transport's reading is paused by us
	wbuf     []byte
	wspare   []byte
	flushing bool  // a flush is queued on the loop
	wpaused  bool  // the transport asked its protocol to stop writing
	werr     error // why writes fail from now on
	closed   bool

	rwake, wwake chan struct{} // one-slot wake-ups, see signal
	done         chan struct{} // closed by Close
	rdl, wdl     deadline

	flushFn func() // c.flush, made once so queuing a flush allocates no closure
}

var _ net.Conn = (*Conn)(nil)

func newConn(l *kernel.Loop, network string) *Conn {
	c := &Conn{
		loop: l, network: network,
		rwake: make(chan struct{}, 1), wwake: make(chan struct{}, 1), done: make(chan struct{}),
		rdl: newDeadline(), wdl: newDeadline(),
	}
	c.flushFn = c.flush
	return c
}

// Read reads what has arrived, waiting for at least one byte. At the end of
// the stream it returns io.EOF; after a failure, the connection's error.
func (c *Conn) Read(p []byte) (int, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return 0, c.opError("read", net.ErrClosed)
		}
		if avail := len(c.rbuf) - c.roff; avail > 0 {
			n := copy(p, c.rbuf[c.roff:])
			c.roff += n
			left := len(c.rbuf) - c.roff
			if left == 0 {
				c.rbuf, c.roff = c.rbuf[:0], 0
				if cap(c.rbuf) > keepCap {
					c.rbuf = nil
				}
			}
			resume := c.rpaused && left <= readLow
			if resume {
				c.rpaused = false
			}
			more := left > 0 || c.rerr != nil
			c.mu.Unlock()
			if more {
				signal(c.rwake)
			}
			if resume {
				c.onLoop(c.resumeReading)
			}
			return n, nil
		}
		if c.rerr != nil {
			err := c.rerr
			c.mu.Unlock()
			signal(c.rwake)
			if err == io.EOF {
				return 0, io.EOF
			}
			return 0, c.opError("read", err)
		}
		c.mu.Unlock()
		if len(p) == 0 {
			return 0, nil
		}
		if err := c.wait(c.rwake, &c.rdl); err != nil {
			return 0, c.opError("read", err)
		}
	}
}

// Write copies p into the Conn's write buffer and queues it for the loop;
// it returns once all of p is buffered. It blocks while the buffer is full
// or the transport has paused writing, until the write deadline.
func (c *Conn) Write(p []byte) (int, error) {
	written := 0
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return written, c.opError("write", net.ErrClosed)
		}
		if c.werr != nil {
			err := c.werr
			c.mu.Unlock()
			signal(c.wwake) // the next blocked writer fails too
			return written, c.opError("write", err)
		}
		if room := writeHigh - len(c.wbuf); !c.wpaused && room > 0 {
			n := min(room, len(p)-written)
			c.wbuf = append(c.wbuf, p[written:written+n]...)
			written += n
			queue := !c.flushing && len(c.wbuf) > 0
			c.flushing = c.flushing || queue
			c.mu.Unlock()
			if queue {
				if err := c.onLoop(c.flushFn); err != nil {
					return written, c.opError("write", err)
				}
			}
			if written == len(p) {
				return written, nil
			}
			continue
		}
		c.mu.Unlock()
		if err := c.wait(c.wwake, &c.wdl); err != nil {
			return written, c.opError("write", err)
		}
	}
}

// wait parks the goroutine until wake is signalled, the Conn is closed, or
// the deadline passes.
func (c *Conn) wait(wake chan struct{}, d *deadline) error {
	select {
	case <-wake:
		return nil
	case <-c.done:
		return net.ErrClosed
	case <-d.channel():
		return os.ErrDeadlineExceeded
	}
}

// Close closes the connection: what was written is flushed first, then the
// transport closes. Blocked Reads and Writes return net.ErrClosed.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.opError("close", net.ErrClosed)
	}
	c.closed = true
	close(c.done)
	c.mu.Unlock()
	// A loop that has closed already has closed the transport with it.
	c.onLoop(func() {
		c.flush()
		if c.t != nil {
			c.t.Close()
		}
	})
	return nil
}

// CloseWrite shuts the write side once what was written is flushed (a TCP
// FIN); reading goes on. Later Writes fail.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.opError("close", net.ErrClosed)
	}
	if c.werr == nil {
		c.werr = errWriteShut
	}
	c.mu.Unlock()
	var err error
	done := make(chan struct{})
	if qerr := c.onLoop(func() {
		defer close(done)
		c.flush()
		if c.t != nil && c.t.CanWriteEOF() {
			err = c.t.WriteEOF()
		}
	}); qerr != nil {
		return c.opError("close", qerr)
	}
	<-done
	if err != nil {
		return c.opError("close", err)
	}
	return nil
}

// LocalAddr returns the local address.
func (c *Conn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

// SetReadDeadline bounds Reads, current and future; the zero time removes
// the bound. A Read past it fails with an error that wraps
// os.ErrDeadlineExceeded (its Timeout method says true).
func (c *Conn) SetReadDeadline(t time.Time) error { c.rdl.set(t); return nil }

// SetWriteDeadline bounds how long Writes wait for buffer room.
func (c *Conn) SetWriteDeadline(t time.Time) error { c.wdl.set(t); return nil }

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.network, Source: c.laddr, Addr: c.raddr, Err: err}
}

// onLoop queues fn on the loop from this goroutine.
func (c *Conn) onLoop(fn func()) error {
	_, err := c.loop.CallSoonThreadsafe(fn)
	return err
}

// The loop's side: everything below runs on the loop's goroutine.

// flush hands the buffered writes to the transport, which sends what the
// socket takes and copies the rest. The two write buffers alternate, so a
// steady stream of writes allocates nothing.
func (c *Conn) flush() {
	c.mu.Lock()
	buf := c.wbuf
	c.wbuf, c.wspare = c.wspare[:0], nil
	c.flushing = false
	c.mu.Unlock()
	var err error
	if len(buf) > 0 && c.t != nil {
		err = c.t.Write(buf)
	}
	c.mu.Lock()
	if err != nil && c.werr == nil {
		c.werr = err
	}
	if cap(buf) <= keepCap {
		c.wspare = buf[:0]
	}
	c.mu.Unlock()
	signal(c.wwake)
}

func (c *Conn) resumeReading() {
	if c.t != nil && !c.t.IsClosing() {
		c.t.ResumeReading()
	}
}

// protocol is the Conn's loop-side half: the transport's protocol.
type protocol struct {
	c    *Conn
	made func(*Conn) // the listener's hand-off, or the dialer's
}

var (
	_ kernel.Protocol         = (*protocol)(nil)
	_ kernel.WriteFlowControl = (*protocol)(nil)
)

func (p *protocol) ConnectionMade(t kernel.BaseTransport) {
	c := p.c
	c.t = t.(kernel.Transport)
	if a, ok := t.GetExtraInfo("sockname"); ok {
		c.laddr, _ = a.(net.Addr)
	}
	if a, ok := t.GetExtraInfo("peername"); ok {
		c.raddr, _ = a.(net.Addr)
	}
	if p.made != nil {
		p.made(c)
	}
}

func (p *protocol) DataReceived(b []byte) {
	c := p.c
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if c.roff > 0 && len(c.rbuf)+len(b) > cap(c.rbuf) {
		n := copy(c.rbuf, c.rbuf[c.roff:])
		c.rbuf, c.roff = c.rbuf[:n], 0
	}
	c.rbuf = append(c.rbuf, b...)
	pause := !c.rpaused && len(c.rbuf)-c.roff > readHigh
	if pause {
		c.rpaused = true
	}
	c.mu.Unlock()
	if pause {
		c.t.PauseReading()
	}
	signal(c.rwake)
}

// EOFReceived keeps the write side open: net.Conn users half-close with
// CloseWrite and expect to go on writing after reading io.EOF.
func (p *protocol) EOFReceived() bool {
	c := p.c
	c.mu.Lock()
	if c.rerr == nil {
		c.rerr = io.EOF
	}
	c.mu.Unlock()
	signal(c.rwake)
	return true
}

func (p *protocol) ConnectionLost(err error) {
	c := p.c
	c.mu.Lock()
	if c.rerr == nil {
		c.rerr = io.EOF
		if err != nil {
			c.rerr = err
		}
	}
	if c.werr == nil || c.werr == errWriteShut {
		c.werr = net.ErrClosed
		if err != nil {
			c.werr = err
		}
	}
	c.mu.Unlock()
	signal(c.rwake)
	signal(c.wwake)
}

func (p *protocol) PauseWriting() {
	p.c.mu.Lock()
	p.c.wpaused = true
	p.c.mu.Unlock()
}

func (p *protocol) ResumeWriting() {
	p.c.mu.Lock()
	p.c.wpaused = false
	p.c.mu.Unlock()
	signal(p.c.wwake)
}
