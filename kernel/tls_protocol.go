package kernel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// The TLS layer, after CPython's sslproto: a protocol on a plain stream
// transport below, a transport for the application's protocol above, and
// crypto/tls in between driven through recordConn. It lives above the I/O
// seam, so it works on every driver and placement, and it composes with
// anything that is a Transport (StartTLS upgrades a live one).
//
// States: handshaking (a task runs the handshake; the application has not
// been told of the connection), wrapped (records flow both ways), shutting
// down (the application closed: close_notify sent, waiting for the peer's
// or the shutdown timeout) and closed (the plain transport is going away).

type tlsState uint8

const (
	tlsHandshaking tlsState = iota
	tlsWrapped
	tlsShuttingDown
	tlsClosed
)

// Defaults, as asyncio's.
const (
	defaultTLSHandshakeTimeout = 60 * time.Second
	defaultTLSShutdownTimeout  = 30 * time.Second
	// tlsPlainBufSize is the per-loop buffer a plain Protocol's decrypted
	// bytes are delivered from (a TLS record holds at most 16 KiB).
	tlsPlainBufSize = 64 << 10
)

// tlsSetup is what a TLS layer is made with.
type tlsSetup struct {
	config           *tls.Config // already carrying ServerName for a client
	serverSide       bool
	handshakeTimeout time.Duration
	shutdownTimeout  time.Duration
	// upgrade: StartTLS on a connection the application knows already, so
	// its ConnectionMade is not called again.
	upgrade bool
}

// tlsProtocol is the layer's lower half: the plain transport's protocol.
type tlsProtocol struct {
	loop  *Loop
	setup tlsSetup
	plain Transport
	conn  *tls.Conn
	rc    recordConn
	app   *tlsTransport

	state      tlsState
	waiter     *Future[struct{}] // the handshake's outcome, for whoever waits (nil on a server)
	handshake  *Task[struct{}]
	timer      TimerHandle // handshake or shutdown timeout
	timedOut   error       // why the timer fired, once it has
	lostErr    error       // the error the application's ConnectionLost gets
	appKnows   bool        // the application's ConnectionMade ran
	appPaused  bool        // the application paused reading
	peerClosed bool        // close_notify or EOF seen
	decryptFn  func()      // p.decrypt, made once
}

var (
	_ Protocol         = (*tlsProtocol)(nil)
	_ WriteFlowControl = (*tlsProtocol)(nil)
)

func newTLSProtocol(l *Loop, app BaseProtocol, setup tlsSetup, waiter *Future[struct{}]) (*tlsProtocol, error) {
	if err := checkStreamProtocol(app); err != nil {
		return nil, err
	}
	if setup.handshakeTimeout <= 0 {
		setup.handshakeTimeout = defaultTLSHandshakeTimeout
	}
	if setup.shutdownTimeout <= 0 {
		setup.shutdownTimeout = defaultTLSShutdownTimeout
	}
	p := &tlsProtocol{loop: l, setup: setup, waiter: waiter}
	p.rc.p = p
	p.app = &tlsTransport{p: p}
	p.app.setProtocol(app)
	p.decryptFn = p.decrypt
	return p, nil
}

// ConnectionMade starts the handshake on the plain transport.
func (p *tlsProtocol) ConnectionMade(t BaseTransport) {
	p.plain = t.(Transport)
	if p.setup.serverSide {
		p.conn = tls.Server(&p.rc, p.setup.config)
	} else {
		p.conn = tls.Client(&p.rc, p.setup.config)
	}
	task, err := CreateTask(p.loop, func(co *Co) (struct{}, error) {
		p.rc.co = co
		defer func() { p.rc.co = nil }()
		// context.Background: a cancellable context would make crypto/tls
		// start a goroutine per handshake; the timeout cancels the task.
		return struct{}{}, p.conn.HandshakeContext(context.Background())
	})
	if err != nil {
		p.fail(fmt.Errorf("tls handshake: %w", err))
		return
	}
	p.handshake = task
	p.timer, _ = p.loop.CallLater(p.setup.handshakeTimeout, func() {
		p.timedOut = fmt.Errorf("tls handshake took longer than %v: %w", p.setup.handshakeTimeout, os.ErrDeadlineExceeded)
		task.CancelMsg("tls handshake timeout")
	})
	task.AddDoneCallback(p.handshakeDone)
}

func (p *tlsProtocol) handshakeDone(task *Task[struct{}]) {
	p.timer.Cancel()
	p.handshake = nil
	if p.state != tlsHandshaking {
		return // the connection was lost or aborted meanwhile
	}
	if err := task.Err(); err != nil {
		if p.timedOut != nil {
			err = p.timedOut
		}
		p.fail(p.handshakeError(err))
		return
	}
	p.state = tlsWrapped
	// Known from here: flow control met inside ConnectionMade (a large
	// first write) reaches the protocol, and so does ConnectionLost if
	// ConnectionMade panics.
	p.appKnows = true
	if !p.setup.upgrade {
		if ok := p.callApp("ConnectionMade", func() { p.app.proto.ConnectionMade(p.app) }); !ok {
			return
		}
	}
	if w := p.waiter; w != nil && !w.Done() {
		w.SetResult(struct{}{})
	}
	// Application data may have come with the handshake's last flight.
	p.decrypt()
}

func (p *tlsProtocol) handshakeError(err error) error {
	side := "client"
	if p.setup.serverSide {
		side = "server"
	}
	peer, _ := p.plain.GetExtraInfo("peername")
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("the peer closed the connection: %w", errConnReset(err))
	}
	return fmt.Errorf("tls handshake (%s side) with %v: %w", side, peer, err)
}

// fail ends a connection whose handshake failed: the waiter gets the
// error; a server has nobody waiting, and a failed handshake there is the
// peer's business (a scanner, a plaintext client), so it is logged at
// debug level only, as asyncio does.
func (p *tlsProtocol) fail(err error) {
	p.state = tlsClosed
	p.lostErr = err
	if w := p.waiter; w != nil && !w.Done() {
		w.SetException(err)
	} else {
		p.loop.logger.Debug("tls handshake failed", "error", err)
	}
	p.plain.Abort()
}

// DataReceived queues ciphertext and, once wrapped, decrypts what it can.
func (p *tlsProtocol) DataReceived(b []byte) {
	switch p.state {
	case tlsHandshaking:
		p.rc.queue(b)
	case tlsWrapped, tlsShuttingDown:
		if p.appPaused || p.rc.buffered() > 0 {
			p.rc.queue(b)
			if !p.appPaused {
				p.decrypt()
			}
			return
		}
		// The common case: decrypt straight from the loop's receive
		// buffer, and keep only what crypto/tls did not take.
		p.rc.cur = b
		p.decrypt()
		rest := p.rc.cur
		p.rc.cur = nil
		p.rc.queue(rest)
	}
}

// decrypt reads application data out of crypto/tls until it needs more
// ciphertext, the application pauses, or the stream ends.
func (p *tlsProtocol) decrypt() {
	for (p.state == tlsWrapped || p.state == tlsShuttingDown) && !p.appPaused {
		var buf []byte
		if p.app.buffered != nil && p.state == tlsWrapped {
			ok := p.callApp("GetBuffer", func() { buf = p.app.buffered.GetBuffer(-1) })
			if !ok {
				return
			}
			if len(buf) == 0 {
				p.appFailed("GetBuffer", errors.New("GetBuffer returned an empty buffer"))
				return
			}
		} else {
			buf = p.loop.tlsPlainBuf()
		}
		n, err := p.conn.Read(buf)
		if n > 0 && p.state == tlsWrapped {
			if p.app.buffered != nil {
				p.callApp("BufferUpdated", func() { p.app.buffered.BufferUpdated(n) })
			} else {
				p.callApp("DataReceived", func() { p.app.data.DataReceived(buf[:n]) })
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, errRecordWouldBlock):
			return
		case err == io.EOF:
			p.endOfStream()
			return
		default:
			p.abort(fmt.Errorf("tls: %w", errConnResetIfEOF(err)))
			return
		}
	}
}

// endOfStream: the peer sent close_notify, or closed at a record boundary
// without one (accepted, as asyncio and Go's own clients accept it; a
// record cut short is an error instead, from decrypt). The application
// hears EOFReceived; TLS cannot half-close, so the connection then shuts
// down whatever EOFReceived answers.
func (p *tlsProtocol) endOfStream() {
	if p.peerClosed {
		return
	}
	p.peerClosed = true
	if p.state == tlsWrapped && p.app.eof != nil {
		var keep bool
		if !p.callApp("EOFReceived", func() { keep = p.app.eof.EOFReceived() }) {
			return
		}
		if keep && p.loop.debug {
			p.loop.logger.Debug("returning true from EOFReceived has no effect on a TLS transport")
		}
	}
	p.shutdown()
	if p.state == tlsShuttingDown {
		p.state = tlsClosed
		p.timer.Cancel()
		p.plain.Close()
	}
}

// shutdown sends close_notify once and waits (up to the shutdown timeout)
// for the peer's, reading and discarding what comes before it.
func (p *tlsProtocol) shutdown() {
	if p.state != tlsWrapped {
		return
	}
	p.state = tlsShuttingDown
	if err := p.conn.CloseWrite(); err != nil && p.loop.debug {
		p.loop.logger.Debug("tls: sending close_notify failed", "error", err)
	}
	if p.peerClosed || p.rc.eof {
		return
	}
	p.timer, _ = p.loop.CallLater(p.setup.shutdownTimeout, func() {
		p.abort(fmt.Errorf("tls shutdown: no close_notify from the peer within %v: %w", p.setup.shutdownTimeout, os.ErrDeadlineExceeded))
	})
	// The peer's close_notify may be queued already.
	p.decrypt()
}

// abort ends the connection at once; err (may be nil) is what the
// application's ConnectionLost gets.
func (p *tlsProtocol) abort(err error) {
	if p.state == tlsClosed {
		return
	}
	if p.state == tlsHandshaking {
		p.fail(err)
		return
	}
	p.state = tlsClosed
	p.timer.Cancel()
	if p.lostErr == nil {
		p.lostErr = err
	}
	p.failWaiter(err)
	p.plain.Abort()
}

// failWaiter tells whoever waits for the handshake (CreateConnection,
// StartTLS) that the connection ended before they heard of it: a
// ConnectionMade that panicked, say.
func (p *tlsProtocol) failWaiter(err error) {
	if w := p.waiter; w != nil && !w.Done() {
		if err == nil {
			err = fmt.Errorf("tls: %w", ErrTransportClosed)
		}
		w.SetException(err)
	}
}

// EOFReceived: the plain stream ended. During the handshake it fails it;
// afterwards the records still queued are decrypted first.
func (p *tlsProtocol) EOFReceived() bool {
	p.rc.feedEOF()
	switch p.state {
	case tlsWrapped, tlsShuttingDown:
		if !p.appPaused {
			p.decrypt()
		}
	}
	return true // the layer closes the plain transport itself
}

// ConnectionLost ends everything: a handshake in progress fails, and the
// application, if it knew of the connection, hears ConnectionLost once.
func (p *tlsProtocol) ConnectionLost(err error) {
	prev := p.state
	p.state = tlsClosed
	p.timer.Cancel()
	if err == nil {
		err = p.lostErr
	}
	if prev == tlsHandshaking {
		if err == nil {
			err = fmt.Errorf("connection lost during the tls handshake: %w", errConnReset(nil))
		}
		if p.handshake != nil {
			p.rc.feedEOF() // the handshake's coroutine wakes and fails
		}
		if w := p.waiter; w != nil && !w.Done() {
			w.SetException(err)
		}
		return
	}
	p.failWaiter(err)
	if p.appKnows {
		p.appKnows = false
		p.callApp("ConnectionLost", func() { p.app.proto.ConnectionLost(err) })
	}
}

// PauseWriting and ResumeWriting pass the plain transport's flow control
// up to the application.
func (p *tlsProtocol) PauseWriting() {
	if f := p.app.flow; f != nil && p.appKnows {
		p.callApp("PauseWriting", f.PauseWriting)
	}
}

func (p *tlsProtocol) ResumeWriting() {
	if f := p.app.flow; f != nil && p.appKnows {
		p.callApp("ResumeWriting", f.ResumeWriting)
	}
}

// callApp runs an application protocol method; a panic is reported and
// aborts the connection (asyncio's _fatal_error).
func (p *tlsProtocol) callApp(name string, fn func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			p.appFailed(name, newPanicError(r))
			ok = false
		}
	}()
	fn()
	return true
}

func (p *tlsProtocol) appFailed(method string, err error) {
	p.loop.CallExceptionHandler(ErrorContext{
		Message:   "Fatal error: protocol " + method + " call failed",
		Err:       err,
		Transport: p.app,
		Protocol:  p.app.proto,
	})
	p.abort(err)
}

// tlsPlainBuf is the loop's buffer that a plain Protocol's decrypted bytes
// are delivered from: valid during DataReceived only, like every received
// byte, so one per loop serves every TLS connection.
func (l *Loop) tlsPlainBuf() []byte {
	if l.net.tlsPlain == nil {
		l.net.tlsPlain = make([]byte, tlsPlainBufSize)
	}
	return l.net.tlsPlain
}
