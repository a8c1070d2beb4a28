package kernel

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// transportOwner is what transportCore needs of the transport embedding
// it: the value to name in exception reports, and the two steps whose
// details (the write queue, a server to detach from) only the owner knows.
type transportOwner interface {
	BaseTransport
	forceClose(err error)
	callConnectionLost()
}

// transportCore is the part the stream and datagram transports share: the
// socket and its descriptor open in the I/O driver, the protocol, the
// closing state and write flow control. It is embedded by value, so the per-event paths reach
// these fields with no extra indirection or allocation; the protocol's
// typed views (Protocol, DatagramProtocol, ...) stay with each owner.
type transportCore struct {
	owner transportOwner // the embedding transport, set once
	loop  *Loop
	sock  *Socket  // nil for a pipe (kernel/pipe.go)
	pipe  *os.File // a pipe the transport was given, nil for one it made
	fd    int
	io    *ioRef // the descriptor in the driver; nil once released
	ioOwn ioRef  // io's storage when the transport opened the descriptor
	proto BaseProtocol
	flow  WriteFlowControl // nil if proto does not want flow control

	sockname, peername net.Addr

	reading  bool // a read operation is started
	writing  bool // a write operation is in flight
	closing  bool
	connLost bool // ConnectionLost is scheduled or done (asyncio: _conn_lost)
	lostDone bool
	lostErr  error
	// sockHandedOver: releaseIO left closing the socket to the sock_*
	// operation that held the descriptor last.
	sockHandedOver bool

	writePaused bool // PauseWriting was called
	high, low   int
}

// transportFD makes sock non-blocking and returns its descriptor, which the
// transport then uses for every system call.
func transportFD(sock *Socket, what string) (int, error) {
	if sock.Blocking() {
		if err := sock.SetBlocking(false); err != nil {
			return -1, err
		}
	}
	fd := sock.Fd()
	if fd < 0 {
		return -1, fmt.Errorf("%s: %w", what, ErrSocketClosed)
	}
	return fd, nil
}

// defaultHighWater and the implied low water mark (high/4) are asyncio's
// flow-control defaults.
const defaultHighWater = 64 << 10

// init fills the core for owner with asyncio's default water marks and
// opens the descriptor in the loop's I/O driver.
func (c *transportCore) init(owner transportOwner, l *Loop, sock *Socket, fd int, peer net.Addr) error {
	*c = transportCore{
		owner: owner, loop: l, sock: sock, fd: fd, peername: peer,
		high: defaultHighWater, low: defaultHighWater / 4,
	}
	if sock != nil {
		c.sockname = sock.LocalAddr()
	}
	io, err := l.acquireIOInto(fd, &c.ioOwn)
	if err != nil {
		return busyErr("transport", fd, err)
	}
	c.io = io
	io.transport = owner
	return nil
}

// finishStart completes the waiter of create_connection and friends once
// ConnectionMade has run: its result, or the error that ended the transport
// (ErrTransportClosed when it was closed without one, so the waiter never
// stays pending).
func (c *transportCore) finishStart(waiter *Future[struct{}], ok bool) {
	if waiter == nil || waiter.Done() {
		return
	}
	if !ok {
		err := c.lostErr
		if err == nil {
			err = ErrTransportClosed
		}
		waiter.SetException(err)
		return
	}
	waiter.SetResult(struct{}{})
}

// callProtocol runs a protocol method that is not on the per-event path; a
// panic is reported and the transport aborted (asyncio's _fatal_error).
func (c *transportCore) callProtocol(name string, fn func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			c.protocolPanicked(name, r)
			ok = false
		}
	}()
	fn()
	return true
}

// protocolPanicked reports a panic from a protocol method and aborts the
// transport: a protocol in an unknown state must not see more data.
func (c *transportCore) protocolPanicked(method string, r any) {
	err := newPanicError(r)
	c.loop.CallExceptionHandler(ErrorContext{
		Message:   "Fatal error: protocol " + method + " call failed",
		Err:       err,
		Transport: c.owner,
		Protocol:  c.proto,
	})
	c.owner.forceClose(err)
}

// reportPanic hands a recovered protocol panic to the exception handler and
// leaves the transport as it is.
func (c *transportCore) reportPanic(message string, r any) {
	c.loop.CallExceptionHandler(ErrorContext{
		Message:   message,
		Err:       newPanicError(r),
		Transport: c.owner,
		Protocol:  c.proto,
	})
}

// opError wraps a failed system call with the socket's addresses; addr is
// the peer concerned, if any.
func (c *transportCore) opError(op string, addr net.Addr, err error) error {
	if c.sock == nil {
		return pipeOpError(op, c.fd, c.pipe, err)
	}
	return &net.OpError{Op: op, Net: netName(c.sock.Family(), c.sock.Type()), Source: c.sockname, Addr: addr, Err: os.NewSyscallError(op, err)}
}

func (c *transportCore) stopReading() {
	if c.reading {
		c.reading = false
		c.io.f.ReadStop()
	}
}

// releaseIO closes the descriptor in the driver, cancelling an operation
// still in flight; the transport does no more I/O after it.
// releaseIO drops the transport's hold on its descriptor in the driver.
// When sock_* operations still hold it (a Sendfile over this transport,
// whose socket is the transport's), their write-side operation is
// cancelled, so they end with an error instead of waiting on a socket
// nobody serves, and closing the socket is handed to the last of them to
// let go: closed now, its number could be reused by the next accept while
// the driver still knows the old registration.
func (c *transportCore) releaseIO() {
	c.reading = false
	r := c.io
	if r == nil {
		return
	}
	c.io = nil
	if r.transport == c.owner {
		r.transport = nil
	}
	if r.users > 1 {
		r.f.Cancel(sdk.Write)
		r.closeLast = c.closeOwned
		c.sockHandedOver = true
	}
	c.loop.releaseIO(r)
}

// closeSocket closes the socket (or the pipe), unless releaseIO handed
// that over.
func (c *transportCore) closeSocket() {
	if !c.sockHandedOver {
		c.closeOwned()
	}
}

// maybePauseProtocol calls PauseWriting once size, what is buffered, passes
// the high water mark.
func (c *transportCore) maybePauseProtocol(size int) {
	if size <= c.high || c.writePaused {
		return
	}
	c.writePaused = true
	if c.flow != nil {
		c.callFlow("PauseWriting", c.flow.PauseWriting)
	}
}

// maybeResumeProtocol calls ResumeWriting once a paused protocol's buffer
// has drained to the low water mark.
func (c *transportCore) maybeResumeProtocol(size int) {
	if !c.writePaused || size > c.low {
		return
	}
	c.writePaused = false
	if c.flow != nil {
		c.callFlow("ResumeWriting", c.flow.ResumeWriting)
	}
}

// callFlow calls PauseWriting or ResumeWriting; a panic is reported but,
// as in asyncio, does not end the connection.
func (c *transportCore) callFlow(name string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			c.reportPanic("protocol "+name+" failed", r)
		}
	}()
	fn()
}

// setWriteBufferLimits sets the water marks as asyncio does (see
// waterMarks) and pauses the protocol at once if size is already above.
func (c *transportCore) setWriteBufferLimits(high, low, size int) error {
	h, lo, err := waterMarks(high, low)
	if err != nil {
		return err
	}
	c.high, c.low = h, lo
	c.maybePauseProtocol(size)
	return nil
}

// closeWhenDrained is Close: stop reading, and end the transport now if
// nothing (size) is buffered, else once writeReady has flushed it.
func (c *transportCore) closeWhenDrained(size int) {
	if c.closing {
		return
	}
	c.closing = true
	c.stopReading()
	if size == 0 {
		c.connLost = true
		c.releaseIO()
		c.scheduleConnectionLost()
	}
}

// lose is the end of forceClose, once the owner has dropped its buffer:
// stop reading and schedule ConnectionLost(err).
func (c *transportCore) lose(err error) {
	if !c.closing {
		c.closing = true
		c.stopReading()
	}
	c.connLost = true
	c.lostErr = err
	c.releaseIO()
	c.scheduleConnectionLost()
}

func (c *transportCore) scheduleConnectionLost() {
	if _, err := c.loop.CallSoon(c.owner.callConnectionLost); err != nil {
		// The loop is closed: nothing will run later, so end it now.
		c.owner.callConnectionLost()
	}
}

// closeOwned closes what the transport owns: its socket, or its pipe (an
// *os.File it was given, or a descriptor it made).
func (c *transportCore) closeOwned() error {
	switch {
	case c.sock != nil:
		return c.sock.Close()
	case c.pipe != nil:
		return c.pipe.Close()
	case c.fd >= 0:
		fd := c.fd
		c.fd = -1
		return unix.Close(fd)
	}
	return nil
}

// tellConnectionLost calls the protocol's ConnectionLost, then releases the
// socket. It runs once, whichever path got here first, and reports whether
// this call was the one (so the owner releases what else it holds).
func (c *transportCore) tellConnectionLost() (told bool) {
	if c.lostDone {
		return false
	}
	c.lostDone = true
	told = true
	defer func() {
		c.releaseIO()
		c.closeSocket()
	}()
	defer func() {
		if r := recover(); r != nil {
			c.reportPanic("Exception in protocol ConnectionLost", r)
		}
	}()
	c.proto.ConnectionLost(c.lostErr)
	return told
}

// IsClosing reports whether Close or Abort was called or the connection is
// lost.
func (c *transportCore) IsClosing() bool { return c.closing }

func (c *transportCore) GetProtocol() BaseProtocol { return c.proto }

func (c *transportCore) GetWriteBufferLimits() (low, high int) { return c.low, c.high }

// GetExtraInfo answers "peername", "sockname" (net.Addr) and "socket"
// (*Socket, still owned by the transport: use it for options, not I/O); a
// pipe transport given an *os.File answers "pipe" with it.
func (c *transportCore) GetExtraInfo(name string) (any, bool) {
	switch name {
	case "peername":
		return c.peername, c.peername != nil
	case "sockname":
		return c.sockname, c.sockname != nil
	case "socket":
		return c.sock, c.sock != nil
	case "pipe":
		return c.pipe, c.pipe != nil
	}
	return nil, false
}
