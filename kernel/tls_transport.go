package kernel

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"syscall"
)

// tlsTransport is the layer's upper half: the Transport the application's
// protocol gets (asyncio's _SSLProtocolTransport). Writes are encrypted at
// once and handed to the plain transport as records, so the plain
// transport's write buffer and water marks are this transport's too.
type tlsTransport struct {
	p *tlsProtocol

	proto    BaseProtocol
	data     Protocol
	buffered BufferedProtocol
	eof      eofProtocol
	flow     WriteFlowControl
	closing  bool
}

var _ Transport = (*tlsTransport)(nil)

// ErrTLSNoHalfClose: TLS has no half-close, so WriteEOF is refused (asyncio
// raises NotImplementedError for an SSL transport's write_eof).
var ErrTLSNoHalfClose = errors.New("tls transports cannot half-close (write_eof)")

func (t *tlsTransport) setProtocol(p BaseProtocol) {
	t.proto = p
	t.data, t.buffered, t.eof = nil, nil, nil
	if bp, ok := p.(BufferedProtocol); ok {
		t.buffered, t.eof = bp, bp
	} else if dp, ok := p.(Protocol); ok {
		t.data, t.eof = dp, dp
	}
	t.flow, _ = p.(WriteFlowControl)
}

func (t *tlsTransport) writable() error {
	if t.closing || t.p.state != tlsWrapped {
		return ErrTransportClosed
	}
	return nil
}

// Write encrypts b into records and queues them on the plain transport.
func (t *tlsTransport) Write(b []byte) error {
	if err := t.writable(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if len(b) == 0 {
		return nil
	}
	if _, err := t.p.conn.Write(b); err != nil {
		err = fmt.Errorf("tls write: %w", err)
		t.p.abort(err)
		return err
	}
	return nil
}

// Writelines writes each buffer in turn.
func (t *tlsTransport) Writelines(bufs [][]byte) error {
	for _, b := range bufs {
		if err := t.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// WriteEOF is refused: see ErrTLSNoHalfClose.
func (t *tlsTransport) WriteEOF() error { return fmt.Errorf("write eof: %w", ErrTLSNoHalfClose) }

// CanWriteEOF is false for TLS.
func (t *tlsTransport) CanWriteEOF() bool { return false }

// Close sends close_notify after what was written, waits for the peer's
// (up to the shutdown timeout), then closes the connection; the protocol's
// ConnectionLost follows. During the handshake it aborts.
func (t *tlsTransport) Close() error {
	if t.closing {
		return nil
	}
	t.closing = true
	switch t.p.state {
	case tlsHandshaking:
		t.p.abort(nil)
	case tlsWrapped:
		t.p.shutdown()
		if t.p.state == tlsShuttingDown && (t.p.peerClosed || t.p.rc.eof) {
			t.p.state = tlsClosed
			t.p.timer.Cancel()
			t.p.plain.Close()
		}
	}
	return nil
}

// Abort closes at once, without close_notify.
func (t *tlsTransport) Abort() {
	t.closing = true
	t.p.abort(nil)
}

func (t *tlsTransport) IsClosing() bool { return t.closing || t.p.state == tlsClosed }

// IsReading reports whether decrypted data is being delivered.
func (t *tlsTransport) IsReading() bool {
	return !t.p.appPaused && !t.IsClosing() && !t.p.peerClosed
}

// PauseReading stops delivering data and stops reading the plain transport,
// so TCP flow control holds the peer back.
func (t *tlsTransport) PauseReading() error {
	if t.IsClosing() || t.p.appPaused {
		return nil
	}
	t.p.appPaused = true
	return t.p.plain.PauseReading()
}

// ResumeReading delivers what was decrypted or received meanwhile (in a
// later loop iteration, as asyncio does) and reads on.
func (t *tlsTransport) ResumeReading() error {
	if t.IsClosing() || !t.p.appPaused {
		return nil
	}
	t.p.appPaused = false
	if _, err := t.p.loop.CallSoon(t.p.decryptFn); err != nil {
		return err
	}
	return t.p.plain.ResumeReading()
}

func (t *tlsTransport) GetWriteBufferSize() int { return t.p.plain.GetWriteBufferSize() }

func (t *tlsTransport) GetWriteBufferLimits() (low, high int) {
	return t.p.plain.GetWriteBufferLimits()
}

func (t *tlsTransport) SetWriteBufferLimits(high, low int) error {
	return t.p.plain.SetWriteBufferLimits(high, low)
}

func (t *tlsTransport) SetProtocol(p BaseProtocol) { t.setProtocol(p) }

func (t *tlsTransport) GetProtocol() BaseProtocol { return t.proto }

// GetExtraInfo answers, besides what the plain transport answers
// ("peername", "sockname", "socket"):
//
//	"peercert"       *x509.Certificate, the peer's leaf (nil without one)
//	"peercertchain"  []*x509.Certificate as the peer sent it
//	"cipher"         string, e.g. "TLS_AES_128_GCM_SHA256"
//	"version"        string, e.g. "TLS 1.3"
//	"alpn_protocol"  string, the negotiated ALPN protocol ("" if none)
//	"ssl_object"     tls.ConnectionState (also as "tls_state")
//	"sslcontext"     *tls.Config
func (t *tlsTransport) GetExtraInfo(name string) (any, bool) {
	switch name {
	case "sslcontext":
		return t.p.setup.config, true
	case "peercert", "peercertchain", "cipher", "version", "alpn_protocol", "ssl_object", "tls_state":
		if t.p.conn == nil || t.p.state == tlsHandshaking {
			return nil, false
		}
		st := t.p.conn.ConnectionState()
		switch name {
		case "peercert":
			if len(st.PeerCertificates) == 0 {
				return nil, true
			}
			return st.PeerCertificates[0], true
		case "peercertchain":
			return st.PeerCertificates, true
		case "cipher":
			return tls.CipherSuiteName(st.CipherSuite), true
		case "version":
			return tls.VersionName(st.Version), true
		case "alpn_protocol":
			return st.NegotiatedProtocol, true
		default:
			return st, true
		}
	}
	return t.p.plain.GetExtraInfo(name)
}

func (t *tlsTransport) String() string {
	return fmt.Sprintf("<TLS transport over %v>", t.p.plain)
}

// errConnReset is ECONNRESET, wrapping what was seen (a peer that left
// mid-handshake, a record cut short) so errors.Is finds either.
func errConnReset(cause error) error {
	if cause == nil {
		return syscall.ECONNRESET
	}
	return fmt.Errorf("%w (%w)", syscall.ECONNRESET, cause)
}

// errConnResetIfEOF marks a stream that ended inside a record as a reset.
func errConnResetIfEOF(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errConnReset(err)
	}
	return err
}
