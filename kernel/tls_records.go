package kernel

import (
	"io"
	"net"
	"time"
)

// recordConn is the net.Conn crypto/tls reads records from and writes
// records to. crypto/tls has no memory-BIO mode: it only drives a net.Conn.
// This one is the TLS layer's two byte queues, so the records meet the
// loop without a goroutine per connection:
//
//   - Reading, during the handshake, parks the handshake's coroutine until
//     the plain transport delivers more bytes: the handshake runs as a
//     short-lived task, suspended on a future, never blocking the loop.
//   - Reading after the handshake never waits: with nothing queued it
//     returns errRecordWouldBlock, a net.Error whose Temporary is true,
//     which crypto/tls reports without marking the connection broken, so
//     the same tls.Conn is read again when more bytes arrive. (That is
//     crypto/tls's documented-by-behaviour contract for temporary errors,
//     kept since Go 1.0 and checked by TestRecordConnWouldBlockIsRetried.)
//   - Writing hands each record to the plain transport, which sends what
//     the socket takes and queues the rest; it never blocks either.
type recordConn struct {
	p *tlsProtocol

	in  []byte // ciphertext queued for crypto/tls: in[off:]
	off int
	cur []byte // DataReceived's bytes while they are being decrypted (not ours to keep)
	eof bool   // the plain transport reported EOF

	co   *Co               // the handshake's coroutine, while it runs
	wait *Future[struct{}] // what the handshake waits on for more bytes
}

// errRecordWouldBlock says "no more ciphertext for now".
var errRecordWouldBlock net.Error = recordWouldBlock{}

type recordWouldBlock struct{}

func (recordWouldBlock) Error() string   { return "tls: no ciphertext buffered" }
func (recordWouldBlock) Timeout() bool   { return false }
func (recordWouldBlock) Temporary() bool { return true }

func (rc *recordConn) Read(b []byte) (int, error) {
	for {
		if rc.off < len(rc.in) {
			n := copy(b, rc.in[rc.off:])
			rc.off += n
			if rc.off == len(rc.in) {
				rc.in, rc.off = rc.in[:0], 0
				if cap(rc.in) > maxKeptRecordBuf {
					rc.in = nil // an idle connection holds no buffer
				}
			}
			return n, nil
		}
		if len(rc.cur) > 0 {
			n := copy(b, rc.cur)
			rc.cur = rc.cur[n:]
			return n, nil
		}
		if rc.eof {
			return 0, io.EOF
		}
		if rc.co == nil {
			return 0, errRecordWouldBlock
		}
		w := CreateFuture[struct{}](rc.p.loop)
		rc.wait = w
		_, err := w.Await(rc.co)
		rc.wait = nil
		if err != nil {
			return 0, err
		}
	}
}

// maxKeptRecordBuf bounds the ciphertext buffer a drained connection keeps.
const maxKeptRecordBuf = 32 << 10

// queue keeps bytes crypto/tls has not taken yet.
func (rc *recordConn) queue(b []byte) {
	if len(b) == 0 {
		return
	}
	if rc.off > 0 && len(rc.in)+len(b) > cap(rc.in) {
		n := copy(rc.in, rc.in[rc.off:])
		rc.in, rc.off = rc.in[:n], 0
	}
	rc.in = append(rc.in, b...)
	rc.wake()
}

func (rc *recordConn) feedEOF() {
	rc.eof = true
	rc.wake()
}

// wake resumes a handshake waiting for bytes.
func (rc *recordConn) wake() {
	if w := rc.wait; w != nil && !w.Done() {
		w.SetResult(struct{}{})
	}
}

func (rc *recordConn) buffered() int { return len(rc.in) - rc.off + len(rc.cur) }

func (rc *recordConn) Write(b []byte) (int, error) {
	if err := rc.p.plain.Write(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Close does nothing: the TLS layer closes the plain transport itself, after
// close_notify, and never calls tls.Conn.Close.
func (rc *recordConn) Close() error { return nil }

func (rc *recordConn) LocalAddr() net.Addr  { return rc.addr("sockname") }
func (rc *recordConn) RemoteAddr() net.Addr { return rc.addr("peername") }

func (rc *recordConn) addr(name string) net.Addr {
	if v, ok := rc.p.plain.GetExtraInfo(name); ok {
		if a, ok := v.(net.Addr); ok {
			return a
		}
	}
	return nil
}

// Deadlines are the loop's business (the handshake and shutdown timeouts);
// crypto/tls's own, such as the 5 s it sets around close_notify, have
// nothing to bound here since nothing blocks.
func (rc *recordConn) SetDeadline(time.Time) error      { return nil }
func (rc *recordConn) SetReadDeadline(time.Time) error  { return nil }
func (rc *recordConn) SetWriteDeadline(time.Time) error { return nil }
