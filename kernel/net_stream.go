package kernel

import (
	"errors"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// Stream transports (TCP and Unix) over the loop's readiness callbacks, with
// asyncio's selector-transport semantics (selector_events.py): one read per
// readiness event, writes tried on the socket first and buffered only when it
// refuses them, water marks that pause the protocol, ConnectionLost exactly
// once, always from a loop callback, before the socket is closed.

const (
	// recvBufSize is the size of each loop's shared receive buffer.
	//
	// The trade-off: asyncio reads up to 256 KiB per readiness event into a
	// fresh bytes object; a per-transport buffer of that size would cost
	// 256 KiB per connection (2.5 GiB for 10k idle connections). Because
	// received bytes are only valid during DataReceived and the loop runs
	// one callback at a time, every stream and datagram transport of a loop
	// can read into the same buffer, like uvloop's per-loop receive buffer.
	// So memory is O(1) per loop, receiving allocates nothing, and a bulk
	// transfer still takes large bites per system call (fewer wake-ups than
	// a 64 KiB buffer) while a small message costs the same as with a small
	// buffer.
	recvBufSize = 256 << 10
	// defaultHighWater and the implied low water mark (high/4) are asyncio's
	// flow-control defaults.
	defaultHighWater = 64 << 10
	// writeChunkSize is the size of the pooled chunks that small unsent
	// writes are copied into; writes larger than a chunk are copied into one
	// buffer of their own size.
	writeChunkSize = 16 << 10
	// maxFreeChunks bounds a loop's pool of write chunks (1 MiB).
	maxFreeChunks = 64
	// maxIovecs is how many queued buffers one sendmsg hands the kernel.
	maxIovecs = 64
)

// Errors of transport operations.
var (
	// ErrTransportClosed: a write or similar on a transport that is closing
	// or closed. (asyncio drops such writes silently and logs after a few;
	// Go callers get the error and may ignore it.)
	ErrTransportClosed = errors.New("transport is closing or closed")
	// ErrWriteAfterEOF: Write after WriteEOF.
	ErrWriteAfterEOF = errors.New("cannot write after WriteEOF")
	// ErrInvalidArgument: an argument or option combination asyncio rejects
	// with ValueError or TypeError.
	ErrInvalidArgument = errors.New("invalid argument")
	// errSendfileInProgress: Write while Sendfile owns the transport.
	errSendfileInProgress = errors.New("unable to write: sendfile is in progress")
)

// netState is the per-loop scratch space the transports share. It lives on
// the loop (one field) so that it is freed with it.
type netState struct {
	rbuf   []byte
	iov    [maxIovecs]unix.Iovec
	msg    unix.Msghdr
	chunks [][]byte // free write chunks, each of capacity writeChunkSize
}

// recvBuf returns the loop's shared receive buffer.
func (l *Loop) recvBuf() []byte {
	if l.net.rbuf == nil {
		l.net.rbuf = make([]byte, recvBufSize)
	}
	return l.net.rbuf
}

func (l *Loop) getChunk() []byte {
	n := len(l.net.chunks)
	if n == 0 {
		return make([]byte, 0, writeChunkSize)
	}
	c := l.net.chunks[n-1]
	l.net.chunks[n-1] = nil
	l.net.chunks = l.net.chunks[:n-1]
	return c[:0]
}

func (l *Loop) putChunk(c []byte) {
	if cap(c) == writeChunkSize && len(l.net.chunks) < maxFreeChunks {
		l.net.chunks = append(l.net.chunks, c[:0])
	}
}

// watchFD is the allocation-free form of AddReader/AddWriter for the
// kernel's own transports: h is a persistent handle the transport made once
// and re-arms on every pause and resume, rather than a new handle and
// closure per registration.
func (l *Loop) watchFD(fd int, ev sdk.Events, h *handle) error {
	if l.closed.Load() {
		return ErrClosed
	}
	t := &l.fds
	slot, ok := t.byFD.get(fd)
	if !ok {
		slot = l.allocSlot(fd)
		if err := l.sel.Register(fd, t.token(slot), ev); err != nil {
			l.freeSlot(slot)
			return fmt.Errorf("watch fd %d: %w", fd, err)
		}
		t.byFD.set(fd, slot)
	} else if r := &t.slots[slot]; r.interest&ev == 0 {
		if err := l.sel.Modify(t.token(slot), r.interest|ev); err != nil {
			return fmt.Errorf("watch fd %d: %w", fd, err)
		}
	}
	r := &t.slots[slot]
	r.interest |= ev
	cb := &r.reader
	if ev == sdk.Write {
		cb = &r.writer
	}
	if *cb != nil && *cb != h {
		(*cb).cancelled = true
	}
	h.cancelled = false
	*cb = h
	return nil
}

// unwatchFD undoes watchFD; the handle is marked cancelled so that a run
// already queued for it is skipped.
func (l *Loop) unwatchFD(fd int, ev sdk.Events) {
	if l.closed.Load() {
		return
	}
	if _, err := l.removeWatch(fd, ev); err != nil {
		l.logger.Warn("unwatching a transport's descriptor failed", "fd", fd, "error", err)
	}
}

func initFDHandle(h *handle, l *Loop, fn func()) {
	*h = handle{loop: l, gen: 1, index: -1, fn: fn, persistent: true}
}

// ---- raw socket I/O without allocation ----

// sendNoSignal sends b on a non-blocking stream socket; MSG_NOSIGNAL turns
// the SIGPIPE of a write to a reset connection into EPIPE.
func sendNoSignal(fd int, b []byte) (int, error) {
	for {
		n, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))),
			uintptr(len(b)), unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

// sendIovecs sends the loop's first n iovecs with one sendmsg.
func (l *Loop) sendIovecs(fd, n int) (int, error) {
	ns := &l.net
	ns.msg = unix.Msghdr{Iov: &ns.iov[0]}
	ns.msg.SetIovlen(n)
	for {
		r, _, e := unix.Syscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&ns.msg)),
			unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT)
		if e == unix.EINTR {
			continue
		}
		clear(ns.iov[:n]) // do not keep sent buffers alive
		if e != 0 {
			return 0, e
		}
		return int(r), nil
	}
}

func readFD(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		return n, err
	}
}

func isWouldBlock(err error) bool { return err == unix.EAGAIN || err == unix.EWOULDBLOCK }

// ---- write queue ----

// writeQueue holds what the socket did not take: bufs[0][head:] goes first.
// Small writes are copied into pooled chunks (several writes share one
// chunk); a large one is copied into a buffer of its own. Only unsent bytes
// are ever copied.
type writeQueue struct {
	bufs [][]byte
	head int
	size int
}

func (q *writeQueue) push(l *Loop, b []byte) {
	q.size += len(b)
	for len(b) > 0 {
		if n := len(q.bufs); n > 0 {
			last := q.bufs[n-1]
			if cap(last) == writeChunkSize && len(last) < cap(last) {
				k := copy(last[len(last):cap(last)], b)
				q.bufs[n-1] = last[:len(last)+k]
				b = b[k:]
				continue
			}
		}
		if len(b) > writeChunkSize {
			q.bufs = append(q.bufs, append([]byte(nil), b...))
			return
		}
		q.bufs = append(q.bufs, l.getChunk())
	}
}

// fill points the loop's iovecs at the queued bytes and returns how many.
func (q *writeQueue) fill(l *Loop) int {
	n := 0
	for i, b := range q.bufs {
		if n == maxIovecs {
			break
		}
		if i == 0 {
			b = b[q.head:]
		}
		if len(b) == 0 {
			continue
		}
		l.net.iov[n].Base = &b[0]
		l.net.iov[n].SetLen(len(b))
		n++
	}
	return n
}

// consume drops n sent bytes from the front, recycling emptied chunks.
func (q *writeQueue) consume(l *Loop, n int) {
	q.size -= n
	for n > 0 {
		rest := len(q.bufs[0]) - q.head
		if n < rest {
			q.head += n
			return
		}
		n -= rest
		l.putChunk(q.bufs[0])
		q.bufs[0] = nil
		q.bufs = q.bufs[1:]
		q.head = 0
	}
	if len(q.bufs) == 0 {
		q.bufs = q.bufs[:0:0] // let the backing array go once drained
	}
}

func (q *writeQueue) clear(l *Loop) {
	for i, b := range q.bufs {
		l.putChunk(b)
		q.bufs[i] = nil
	}
	q.bufs, q.head, q.size = nil, 0, 0
}

// ---- the stream transport ----

// eofProtocol is the EOFReceived half both stream protocol kinds share.
type eofProtocol interface{ EOFReceived() bool }

// streamTransport is the Transport of TCP and Unix stream sockets.
type streamTransport struct {
	transportCore
	server *Server

	data     Protocol         // set when proto is a plain Protocol
	buffered BufferedProtocol // set when proto is a BufferedProtocol (preferred)
	eof      eofProtocol

	paused    bool   // PauseReading
	eofIn     bool   // EOF received and the protocol kept the transport open
	eofOut    bool   // WriteEOF called
	protoBusy string // the protocol method being called, for reports

	wq          writeQueue
	emptyWaiter *Future[struct{}] // Sendfile waits for the buffer to drain
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
	t.init(t, l, sock, fd, peer, t.readReady, t.writeReady)
	t.setProtocol(proto)
	if _, err := l.CallSoon(func() { t.start(waiter) }); err != nil {
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
	if t.reading || t.closing || t.paused || t.eofIn {
		return
	}
	if err := t.loop.watchFD(t.fd, sdk.Read, &t.rh); err != nil {
		t.fatalError(err)
		return
	}
	t.reading = true
}

func (t *streamTransport) startWriting() error {
	if t.writing {
		return nil
	}
	if err := t.loop.watchFD(t.fd, sdk.Write, &t.wh); err != nil {
		return err
	}
	t.writing = true
	return nil
}

// readReady is the reader callback: one read per readiness event, so one
// busy connection cannot starve the others.
func (t *streamTransport) readReady() {
	if t.connLost {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			t.protocolPanicked(t.protoBusy, r)
		}
	}()
	var buf []byte
	if t.buffered != nil {
		t.protoBusy = "GetBuffer"
		buf = t.buffered.GetBuffer(-1)
		if len(buf) == 0 {
			panic("GetBuffer returned an empty buffer")
		}
	} else if t.data != nil {
		buf = t.loop.recvBuf()
	} else {
		panic(fmt.Sprintf("protocol %T implements neither Protocol nor BufferedProtocol", t.proto))
	}
	n, err := readFD(t.fd, buf)
	if err != nil {
		if isWouldBlock(err) {
			return
		}
		t.fatalError(t.opError("read", t.peername, err))
		return
	}
	if n == 0 {
		t.readEOF()
		return
	}
	if t.buffered != nil {
		t.protoBusy = "BufferUpdated"
		t.buffered.BufferUpdated(n)
	} else {
		t.protoBusy = "DataReceived"
		t.data.DataReceived(buf[:n])
	}
}

func (t *streamTransport) readEOF() {
	t.protoBusy = "EOFReceived"
	if t.eof.EOFReceived() {
		// Half-close: the protocol may still write, but nothing more can
		// be read.
		t.eofIn = true
		t.stopReading()
		return
	}
	t.Close()
}

// writeReady is the writer callback: flush as much of the queue as the
// socket takes with one sendmsg.
func (t *streamTransport) writeReady() {
	if t.connLost {
		return
	}
	l := t.loop
	n, err := l.sendIovecs(t.fd, t.wq.fill(l))
	if err != nil {
		if isWouldBlock(err) {
			return
		}
		t.stopWriting()
		t.wq.clear(l)
		t.fatalError(t.opError("write", t.peername, err))
		return
	}
	t.wq.consume(l, n)
	t.maybeResumeProtocol(t.wq.size)
	if t.wq.size > 0 {
		return
	}
	t.stopWriting()
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

func (t *streamTransport) shutdownWrite() {
	if err := unix.Shutdown(t.fd, unix.SHUT_WR); err != nil {
		t.fatalError(t.opError("shutdown", t.peername, err))
	}
}

func (t *streamTransport) writable() error {
	switch {
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
		n, err := sendNoSignal(t.fd, b)
		if err != nil && !isWouldBlock(err) {
			err = t.opError("write", t.peername, err)
			t.fatalError(err)
			return err
		}
		if n == len(b) {
			return nil
		}
		b = b[n:]
		if err := t.startWriting(); err != nil {
			t.fatalError(err)
			return err
		}
	}
	t.wq.push(t.loop, b)
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
		k := 0
		for _, b := range bufs {
			if k == maxIovecs {
				break
			}
			if len(b) > 0 {
				l.net.iov[k].Base = &b[0]
				l.net.iov[k].SetLen(len(b))
				k++
			}
		}
		if k == 0 {
			return nil
		}
		n, err := l.sendIovecs(t.fd, k)
		if err != nil && !isWouldBlock(err) {
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
		if err := t.startWriting(); err != nil {
			t.fatalError(err)
			return err
		}
		t.wq.push(l, bufs[0][n:])
		bufs = bufs[1:]
	}
	for _, b := range bufs {
		t.wq.push(l, b)
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
	if t.wq.size == 0 {
		if err := unix.Shutdown(t.fd, unix.SHUT_WR); err != nil {
			err = t.opError("shutdown", t.peername, err)
			t.fatalError(err)
			return err
		}
	}
	return nil
}

// CanWriteEOF is true: TCP and Unix stream sockets can half-close.
func (t *streamTransport) CanWriteEOF() bool { return true }

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
		t.wq.clear(t.loop)
		t.stopWriting()
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
func (t *streamTransport) IsReading() bool { return !t.paused && !t.closing && !t.eofIn }

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
	return fmt.Sprintf("<StreamTransport fd=%d %s read=%v write=%v bufsize=%d>", t.fd, state, t.IsReading(), t.writing, t.wq.size)
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
