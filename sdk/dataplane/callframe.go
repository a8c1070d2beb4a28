package dataplane

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// callConn is one end of a call plane: whole messages in and out, each cut
// into frames of at most maxFrame bytes (WIRE.md §8.2). Sends come from any
// goroutine and are serialised, so the frames of one message are never
// interleaved with another's; receives come from one reader goroutine.
//
// Unlike the selector plane, whose loop goroutine blocks in recvmsg by
// design (it has nothing else to do), a call plane's reader and senders are
// ordinary goroutines, so the socket is non-blocking and waits in the Go
// runtime's poller: a reader waiting for results costs no parked OS thread,
// and a result wakes its caller without a thread hand-off.
type callConn struct {
	file *os.File // a non-blocking duplicate, registered with the poller
	rc   syscall.RawConn

	sendMu  sync.Mutex
	out     sock
	scratch []byte // one continuation frame, under sendMu

	in  sock // the reader's
	buf []byte
	oob []byte
	fds []int

	// The poller callbacks and their results, made once so that a frame
	// allocates no closure: readFn runs on the reader goroutine only,
	// writeFn under sendMu.
	readFn          func(uintptr) bool
	rn, roobn, rflg int
	rerr            error
	writeFn         func(uintptr) bool
	wframe          []byte
	werr            error

	// born and moved time the last frame that went either way (moved is
	// nanoseconds since born), so a health check can tell a plane that is
	// busy with a large message from one that has stopped.
	born  time.Time
	moved atomic.Int64
}

// lastMoved is when a frame last went either way.
func (c *callConn) lastMoved() time.Time { return c.born.Add(time.Duration(c.moved.Load())) }

func (c *callConn) touch() { c.moved.Store(int64(time.Since(c.born))) }

// newCallConn makes a poller-driven duplicate of conn's socket; conn stays
// the caller's to close.
func newCallConn(conn *os.File) (*callConn, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("dataplane: %w", err)
	}
	fd := -1
	cerr := raw.Control(func(f uintptr) { fd, err = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) })
	if cerr != nil || err != nil {
		return nil, fmt.Errorf("dataplane: dup: %w", errors.Join(cerr, err))
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("dataplane: %w", err)
	}
	file := os.NewFile(uintptr(fd), conn.Name())
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("dataplane: %w", err)
	}
	c := &callConn{
		born:    time.Now(),
		file:    file,
		rc:      rc,
		scratch: make([]byte, maxFrame),
		buf:     make([]byte, maxFrame+1),
		oob:     make([]byte, unix.CmsgSpace(4*8)),
	}
	c.readFn = func(fd uintptr) bool {
		c.in.fd = int(fd)
		c.rn, c.roobn, c.rflg, c.rerr = c.in.recv(c.buf, c.oob, unix.MSG_DONTWAIT)
		return c.rerr != errAgain
	}
	c.writeFn = func(fd uintptr) bool {
		c.out.fd = int(fd)
		c.werr = c.out.send(c.wframe, nil, unix.MSG_DONTWAIT)
		return !errors.Is(c.werr, unix.EAGAIN)
	}
	return c, nil
}

// sendFrame sends one frame, waiting in the poller while the socket is full.
func (c *callConn) sendFrame(p []byte) error {
	c.wframe = p
	werr := c.rc.Write(c.writeFn)
	c.wframe = nil
	if werr != nil {
		return fmt.Errorf("dataplane: sendmsg: %w (%w)", ErrPeerGone, werr)
	}
	if c.werr == nil {
		c.touch()
	}
	return c.werr
}

// shutdown ends both directions: the reader sees end-of-file, senders fail.
func (c *callConn) shutdown() {
	_ = c.rc.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_RDWR) })
}

func (c *callConn) close() error { return c.file.Close() }

// send sends one whole message: its first maxFrame bytes as one frame,
// then the rest in continuation frames.
func (c *callConn) send(msg []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	first := min(len(msg), maxFrame)
	if err := c.sendFrame(msg[:first]); err != nil {
		return err
	}
	id := le.Uint64(msg[8:])
	for rest := msg[first:]; len(rest) > 0; {
		n := min(len(rest), maxFrame-contHeaderLen)
		putContHeader(c.scratch, id)
		copy(c.scratch[contHeaderLen:], rest[:n])
		if err := c.sendFrame(c.scratch[:contHeaderLen+n]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

func putContHeader(b []byte, id uint64) {
	le.PutUint32(b[0:], callMagic)
	b[4], b[5], b[6], b[7] = CallVersion, ctCont, 0, 0
	le.PutUint64(b[8:], id)
}

// recv receives one whole message, reassembled from its frames, into a
// buffer of its own (the caller keeps it).
func (c *callConn) recv() ([]byte, error) {
	n, err := c.recvFrame()
	if err != nil {
		return nil, err
	}
	total, err := messageLen(c.buf[:n])
	if err != nil {
		return nil, err
	}
	if total <= maxFrame && n != total || total > maxFrame && n != maxFrame {
		return nil, fmt.Errorf("%w: first frame of %d bytes for a message of %d", ErrProtocol, n, total)
	}
	msg := make([]byte, total)
	got := copy(msg, c.buf[:n])
	id := le.Uint64(msg[8:])
	for got < total {
		n, err := c.recvFrame()
		if err != nil {
			return nil, err
		}
		if err := checkCont(c.buf[:n], id, min(total-got, maxFrame-contHeaderLen)); err != nil {
			return nil, err
		}
		got += copy(msg[got:], c.buf[contHeaderLen:n])
	}
	return msg, nil
}

// checkCont validates a continuation frame of the message id that must
// carry want bytes.
func checkCont(f []byte, id uint64, want int) error {
	switch {
	case len(f) < contHeaderLen || le.Uint32(f) != callMagic || f[4] != CallVersion || f[5] != ctCont:
		return fmt.Errorf("%w: expected a continuation frame", ErrProtocol)
	case f[6] != 0 || f[7] != 0:
		return fmt.Errorf("%w: reserved continuation field set", ErrProtocol)
	case le.Uint64(f[8:]) != id:
		return fmt.Errorf("%w: continuation of message %d inside message %d", ErrProtocol, le.Uint64(f[8:]), id)
	case len(f)-contHeaderLen != want:
		return fmt.Errorf("%w: continuation of %d bytes, want %d", ErrProtocol, len(f)-contHeaderLen, want)
	}
	return nil
}

// recvFrame receives one frame into c.buf, waiting in the poller. No
// descriptors travel on the call plane: any that arrive are closed and the
// frame is a violation.
func (c *callConn) recvFrame() (int, error) {
	if rerr := c.rc.Read(c.readFn); rerr != nil {
		return 0, fmt.Errorf("dataplane: recvmsg: %w (%w)", ErrPeerGone, rerr)
	}
	n, oobn, mflags := c.rn, c.roobn, c.rflg
	if c.rerr != nil {
		return 0, c.rerr
	}
	c.touch()
	if oobn > 0 {
		c.fds, _ = parseRights(c.oob[:oobn], c.fds[:0])
		closeAll(c.fds)
		return 0, fmt.Errorf("%w: %d descriptors on the call plane (closed)", ErrProtocol, len(c.fds))
	}
	if n == 0 {
		return 0, fmt.Errorf("dataplane: recvmsg: %w (EOF)", ErrPeerGone)
	}
	if mflags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		return 0, fmt.Errorf("%w: frame truncated (flags %#x)", ErrProtocol, mflags)
	}
	return n, nil
}
