package streams

import (
	"crypto/tls"
	"fmt"

	"github.com/loopkernel/loopkernel/kernel"
)

// StartTLS upgrades the stream's connection to TLS in place (asyncio:
// StreamWriter.start_tls): it drains what was written, runs the handshake,
// and from then on the Writer and its Reader carry TLS. The side is the
// stream's own: a stream StartServer accepted is the server's end (config
// must then carry a certificate), one OpenConnection made is the client's,
// whatever opts.ServerSide says. Bytes the Reader buffered before the
// upgrade stay plaintext and are read first, so a protocol should upgrade
// only where its peer is waiting (after "STARTTLS" and its answer).
func (w *Writer) StartTLS(co *kernel.Co, config *tls.Config, opts *kernel.StartTLSOptions) error {
	if err := w.Drain(co); err != nil {
		return fmt.Errorf("start tls: %w", err)
	}
	var o kernel.StartTLSOptions
	if opts != nil {
		o = *opts
	}
	o.ServerSide = w.proto.onConnect != nil
	t, err := kernel.StartTLS(co, w.t, w.proto, config, &o)
	if err != nil {
		return err
	}
	w.t = t
	w.proto.transport = t
	w.reader.SetTransport(t)
	return nil
}
