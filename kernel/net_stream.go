package kernel

import (
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// Stream transports (TCP and Unix) on the I/O seam, with asyncio's
// selector-transport semantics (selector_events.py), whatever the driver:
// reads delivered as the driver completes them (one read per readiness
// event on the readiness driver), writes tried on the socket first
// (TryWrite) and queued only when it refuses them, the queue then written
// by one write operation at a time, water marks that pause the protocol,
// ConnectionLost exactly once, always from a loop callback, before the
// socket is closed.

// eofProtocol is the EOFReceived half both stream protocol kinds share.
type eofProtocol interface{ EOFReceived() bool }

// streamTransport is the Transport of TCP and Unix stream sockets.
type streamTransport struct {
	transportCore
	server *Server
	kind   streamKind // a socket, or one end of a pipe (kernel/pipe.go)

	data     Protocol         // set when proto is a plain Protocol
	buffered BufferedProtocol // set when proto is a BufferedProtocol (preferred)
	eof      eofProtocol

	paused    bool   // PauseReading
	eofIn     bool   // EOF received and the protocol kept the transport open
	eofOut    bool   // WriteEOF called
	protoBusy string // the protocol method being called, for reports

	wq          writeQueue
	offered     [][]byte          // the queued buffers the write in flight took
	emptyWaiter *Future[struct{}] // Sendfile waits for the buffer to drain
	rbuf        []byte            // the buffer GetBuffer gave for the read in progress

	// The callbacks handed to the driver, as method values made once per
	// connection, so that no read or write allocates one.
	allocFn func(hint int) []byte
	readFn  func(data []byte, err error)
	wroteFn func(n int, err error)
}

// newStreamTransport wraps a connected stream socket; peer, when known
// (from accept), saves a getpeername. The protocol's
// ConnectionMade runs in the next loop iteration, then reading starts
// (unless the protocol paused it), then waiter (if any) gets its result —
// or the error if ConnectionMade panicked.
func newStreamTransport(l *Loop, sock *Socket, proto BaseProtocol, waiter *Future[struct{}], server *Server, peer net.Addr) (*streamTransport, error) {
	if sock.Type() != unix.SOCK_STREAM {
		return nil, fmt.Errorf("stream transport needs a SOCK_STREAM socket, got %s: %w", typeName(sock.Type()), ErrInvalidArgument)
	}
	if err := checkStreamProtocol(proto); err != nil {
		return nil, err
	}
	fd, err := transportFD(sock, "stream transport")
	if err != nil {
		return nil, err
	}
	if sock.Family() == unix.AF_INET || sock.Family() == unix.AF_INET6 {
		// asyncio 3.6+: no Nagle delay; latency over packet count.
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	if peer == nil {
		peer = sock.RemoteAddr()
	}
	t := &streamTransport{server: server}
	if err := t.init(t, l, sock, fd, peer); err != nil {
		return nil, fmt.Errorf("stream transport: %w", err)
	}
	t.allocFn, t.readFn, t.wroteFn = t.alloc, t.dataRead, t.wrote
	t.setProtocol(proto)
	if _, err := l.CallSoon(func() { t.start(waiter) }); err != nil {
		t.releaseIO()
		return nil, fmt.Errorf("stream transport: %w", err)
	}
	if server != nil {
		server.attach(t)
	}
	return t, nil
}

func checkStreamProtocol(p BaseProtocol) error {
	switch p.(type) {
	case BufferedProtocol, Protocol:
		return nil
	case nil:
		return fmt.Errorf("nil protocol: %w", ErrInvalidArgument)
	}
	return fmt.Errorf("protocol %T implements neither Protocol nor BufferedProtocol: %w", p, ErrInvalidArgument)
}

func (t *streamTransport) setProtocol(p BaseProtocol) {
	t.proto = p
	t.data, t.buffered, t.flow, t.eof = nil, nil, nil, nil
	if bp, ok := p.(BufferedProtocol); ok {
		t.buffered, t.eof = bp, bp
	} else if dp, ok := p.(Protocol); ok {
		t.data, t.eof = dp, dp
	}
	t.flow, _ = p.(WriteFlowControl)
}

func (t *streamTransport) start(waiter *Future[struct{}]) {
	ok := t.callProtocol("ConnectionMade", func() { t.proto.ConnectionMade(t) })
	if ok && !t.closing && !t.paused {
		t.startReading()
	}
	if ok && !t.closing && t.kind.writeOnly() {
		t.watchReader()
	}
	t.finishStart(waiter, ok)
}

// fatalError ends the connection after an I/O error. Errors the network
// causes (resets, timeouts) are the peer's business and go to
// ConnectionLost only, as in asyncio; debug mode also logs them.
func (t *streamTransport) fatalError(err error) {
	if t.loop.debug {
		t.loop.logger.Debug("fatal error on transport", "transport", fmt.Sprintf("%p", t), "error", err)
	}
	t.forceClose(err)
}

func (t *streamTransport) startReading() {
	if t.reading || t.closing || t.paused || t.eofIn || t.io == nil || t.kind.writeOnly() {
		return
	}
	if err := t.io.f.ReadStart(t.allocFn, t.readFn); err != nil {
		t.fatalError(err)
		return
	}
	t.reading = true
}

// alloc is the read operation's buffer provider: the loop's shared buffer
// for a plain Protocol (its bytes are only valid during DataReceived), the
// protocol's own for a BufferedProtocol.
func (t *streamTransport) alloc(hint int) []byte {
	if t.buffered == nil {
		if t.data == nil {
			t.protocolPanicked("DataReceived", fmt.Sprintf("protocol %T implements neither Protocol nor BufferedProtocol", t.proto))
			return nil
		}
		return t.loop.recvBuf()
	}
	return t.getBuffer(hint)
}

func (t *streamTransport) getBuffer(hint int) (buf []byte) {
	defer func() {
		if r := recover(); r != nil {
			t.protocolPanicked("GetBuffer", r)
			buf = nil
		}
	}()
	buf = t.buffered.GetBuffer(hint)
	if len(buf) == 0 {
		panic("GetBuffer returned an empty buffer")
	}
	t.rbuf = buf
	return buf
}

// dataRead is the read operation's callback. The bytes are in the buffer
// alloc gave, or, for a driver with buffers of its own, in one of those,
// which a BufferedProtocol gets copied into its buffers.
func (t *streamTransport) dataRead(data []byte, err error) {
	if t.connLost {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			t.protocolPanicked(t.protoBusy, r)
		}
	}()
	if err != nil {
		if err == io.EOF {
			t.readEOF()
			return
		}
		t.fatalError(t.opError("read", t.peername, err))
		return
	}
	if t.buffered == nil {
		t.protoBusy = "DataReceived"
		t.data.DataReceived(data)
		return
	}
	if len(t.rbuf) > 0 && &data[0] == &t.rbuf[0] {
		t.rbuf = nil
		t.protoBusy = "BufferUpdated"
		t.buffered.BufferUpdated(len(data))
		return
	}
	for len(data) > 0 && !t.connLost {
		t.protoBusy = "GetBuffer"
		buf := t.buffered.GetBuffer(len(data))
		if len(buf) == 0 {
			panic("GetBuffer returned an empty buffer")
		}
		k := copy(buf, data)
		data = data[k:]
		t.protoBusy = "BufferUpdated"
		t.buffered.BufferUpdated(k)
	}
}

func (t *streamTransport) readEOF() {
	t.protoBusy = "EOFReceived"
	if t.eof.EOFReceived() && t.kind == socketStream {
		// Half-close: the protocol may still write, but nothing more can
		// be read.
		t.eofIn = true
		t.stopReading()
		return
	}
	t.Close()
}

// flush submits the queue to the driver as one write operation, unless
// one is in flight already (its completion submits what is left).
func (t *streamTransport) flush() error {
	if t.writing || t.wq.size == 0 || t.io == nil {
		return nil
	}
	t.offered = t.wq.offer(t.offered[:0])
	if err := t.io.f.Write(t.offered, t.wroteFn); err != nil {
		return err
	}
	t.writing = true
	return nil
}

// wrote is the write operation's completion: drop what went out, and
// submit the rest (which costs the readiness driver no system call from
// here), or, with the queue empty, finish what waited for it.
func (t *streamTransport) wrote(n int, err error) {
	t.writing = false
	clear(t.offered)
	if t.connLost {
		return // cancelled, or the transport was aborted meanwhile
	}
	l := t.loop
	if err != nil {
		t.wq.clear(l, false)
		t.fatalError(t.opError("write", t.peername, err))
		return
	}
	t.wq.consume(l, n)
	t.maybeResumeProtocol(t.wq.size)
	if t.wq.size > 0 {
		if err := t.flush(); err != nil {
			t.fatalError(err)
		}
		return
	}
	if w := t.emptyWaiter; w != nil && !w.Done() {
		w.SetResult(struct{}{})
	}
	switch {
	case t.closing:
		t.connLost = true
		t.callConnectionLost()
	case t.eofOut:
		t.shutdownWrite()
	}
}

// shutdownWrite half-closes the socket once the queue has drained; a
// failure ends the transport.
func (t *streamTransport) shutdownWrite() {
	if t.io == nil {
		return
	}
	err := t.io.f.Shutdown(func(err error) {
		if err != nil && !t.connLost {
			t.fatalError(t.opError("shutdown", t.peername, err))
		}
	})
	if err != nil {
		t.fatalError(err)
	}
}

func (t *streamTransport) writable() error {
	switch {
	case t.kind == readPipe:
		return errReadOnlyPipe
	case t.eofOut:
		return ErrWriteAfterEOF
	case t.emptyWaiter != nil:
		return errSendfileInProgress
	case t.closing || t.connLost:
		return ErrTransportClosed
	}
	return nil
}

// Write sends b, or as much as the socket takes now and queues a copy of the
// rest. b may be reused as soon as Write returns.
func (t *streamTransport) Write(b []byte) error {
	if err := t.writable(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if len(b) == 0 {
		return nil
	}
	if t.wq.size == 0 {
		n, err := t.loop.tryWrite(t.io, b)
		if err != nil && !errors.Is(err, sdk.ErrWouldBlock) {
			err = t.opError("write", t.peername, err)
			t.fatalError(err)
			return err
		}
		if n == len(b) {
			return nil
		}
		b = b[n:]
	}
	t.wq.push(t.loop, b)
	if err := t.flush(); err != nil {
		t.fatalError(err)
		return err
	}
	t.maybePauseProtocol(t.wq.size)
	return nil
}

// Writelines writes the buffers in order; with nothing queued it offers
// them all to the socket in one sendmsg before copying the remainder.
func (t *streamTransport) Writelines(bufs [][]byte) error {
	if err := t.writable(); err != nil {
		return fmt.Errorf("writelines: %w", err)
	}
	l := t.loop
	if t.wq.size == 0 {
		total := 0
		for _, b := range bufs {
			total += len(b)
		}
		if total == 0 {
			return nil
		}
		n, err := t.io.f.TryWrite(bufs)
		if err != nil && !errors.Is(err, sdk.ErrWouldBlock) {
			err = t.opError("write", t.peername, err)
			t.fatalError(err)
			return err
		}
		for len(bufs) > 0 && n >= len(bufs[0]) {
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
		if len(bufs) == 0 {
			return nil
		}
		t.wq.push(l, bufs[0][n:])
		bufs = bufs[1:]
	}
	for _, b := range bufs {
		t.wq.push(l, b)
	}
	if err := t.flush(); err != nil {
		t.fatalError(err)
		return err
	}
	t.maybePauseProtocol(t.wq.size)
	return nil
}

// WriteEOF shuts the write side down once the queue is flushed.
func (t *streamTransport) WriteEOF() error {
	if t.closing || t.eofOut {
		return nil
	}
	t.eofOut = true
	if t.kind != socketStream {
		// A pipe cannot half-close: its end is the close (asyncio's
		// _UnixWritePipeTransport.write_eof).
		return t.Close()
	}
	if t.wq.size == 0 {
		t.shutdownWrite()
	}
	return nil
}

// CanWriteEOF is true: TCP and Unix stream sockets can half-close, and a
// write pipe ends with its close.
func (t *streamTransport) CanWriteEOF() bool { return t.kind != readPipe }

// Close stops reading, flushes the queue, then closes the socket and calls
// ConnectionLost(nil).
func (t *streamTransport) Close() error {
	t.closeWhenDrained(t.wq.size)
	return nil
}

// Abort closes at once, dropping queued data; ConnectionLost gets nil.
func (t *streamTransport) Abort() { t.forceClose(nil) }

func (t *streamTransport) forceClose(err error) {
	if t.connLost {
		return
	}
	if t.wq.size > 0 {
		t.wq.clear(t.loop, t.writing)
	}
	t.lose(err)
}

// callConnectionLost tells the protocol, then releases the socket, a
// pending Sendfile and the server's hold on the connection; once.
func (t *streamTransport) callConnectionLost() {
	if !t.tellConnectionLost() {
		return
	}
	if w := t.emptyWaiter; w != nil && !w.Done() {
		w.SetException(fmt.Errorf("connection closed during sendfile: %w", ErrTransportClosed))
	}
	if s := t.server; s != nil {
		t.server = nil
		s.detach(t)
	}
}

// IsReading reports whether the transport delivers data: not paused, not
// closing, and the peer has not sent EOF.
func (t *streamTransport) IsReading() bool {
	return !t.paused && !t.closing && !t.eofIn && !t.kind.writeOnly()
}

// PauseReading stops reading until ResumeReading; the kernel's socket
// buffer then fills and TCP flow control stops the peer.
func (t *streamTransport) PauseReading() error {
	if t.closing || t.paused {
		return nil
	}
	t.paused = true
	t.stopReading()
	return nil
}

// ResumeReading undoes PauseReading.
func (t *streamTransport) ResumeReading() error {
	if t.closing || !t.paused {
		return nil
	}
	t.paused = false
	t.startReading()
	return nil
}

func (t *streamTransport) GetWriteBufferSize() int { return t.wq.size }

// SetWriteBufferLimits sets the water marks as asyncio does: high < 0 is
// 64 KiB (or 4*low when low is given), low < 0 is high/4; it fails unless
// high >= low >= 0.
func (t *streamTransport) SetWriteBufferLimits(high, low int) error {
	return t.setWriteBufferLimits(high, low, t.wq.size)
}

func waterMarks(high, low int) (int, int, error) {
	if high < 0 {
		if low < 0 {
			high = defaultHighWater
		} else {
			high = 4 * low
		}
	}
	if low < 0 {
		low = high / 4
	}
	if low > high {
		return 0, 0, fmt.Errorf("write buffer limits: high (%d) must be >= low (%d) >= 0: %w", high, low, ErrInvalidArgument)
	}
	return high, low, nil
}

// SetProtocol switches protocols; later events go to p. p should be a
// Protocol or BufferedProtocol, else the next read aborts the transport.
func (t *streamTransport) SetProtocol(p BaseProtocol) { t.setProtocol(p) }

func (t *streamTransport) String() string {
	state := "open"
	switch {
	case t.lostDone:
		state = "closed"
	case t.closing:
		state = "closing"
	}
	return fmt.Sprintf("<%s fd=%d %s read=%v write=%v bufsize=%d>", t.kind, t.fd, state, t.IsReading(), t.writing, t.wq.size)
}

// makeEmptyWaiter is for Sendfile: it returns a future done when the write
// queue has drained, and makes Write fail until resetEmptyWaiter.
func (t *streamTransport) makeEmptyWaiter() (*Future[struct{}], error) {
	if t.emptyWaiter != nil {
		return nil, fmt.Errorf("sendfile: %w", errSendfileInProgress)
	}
	w := CreateFuture[struct{}](t.loop)
	t.emptyWaiter = w
	if t.wq.size == 0 {
		w.SetResult(struct{}{})
	}
	return w, nil
}

func (t *streamTransport) resetEmptyWaiter() { t.emptyWaiter = nil }

var _ Transport = (*streamTransport)(nil)
