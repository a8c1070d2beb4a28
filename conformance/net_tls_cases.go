package conformance

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/internal/certs"
	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
)

// TLS over the loop's transports (ssl= on connections and servers,
// start_tls): handshakes both ways, verification failures with the error
// that names them, timeouts, close_notify, flow control through the layer,
// and what a misbehaving peer gets. The peers are this loop's own
// transports or Go's crypto/tls over package net, on loopback.
var netTLSCases = []ncase{
	{name: "net/tls/round-trip/tls1.2", run: func(n *nt) { nTLSRoundTrip(n, tls.VersionTLS12) }},
	{name: "net/tls/round-trip/tls1.3", run: func(n *nt) { nTLSRoundTrip(n, tls.VersionTLS13) }},
	{name: "net/tls/buffered-protocol", run: nTLSBufferedProtocol},
	{name: "net/tls/unix", run: nTLSUnix},
	{name: "net/tls/client-certificate", run: nTLSClientCertificate},
	{name: "net/tls/hostname-mismatch", run: nTLSHostnameMismatch},
	{name: "net/tls/untrusted", run: nTLSUntrusted},
	{name: "net/tls/expired", run: nTLSExpired},
	{name: "net/tls/handshake-timeout", run: nTLSHandshakeTimeout},
	{name: "net/tls/close-notify", run: nTLSCloseNotify},
	{name: "net/tls/shutdown-timeout", run: nTLSShutdownTimeout},
	{name: "net/tls/start-tls", run: nTLSStartTLS},
	{name: "net/tls/back-pressure", run: nTLSBackPressure},
	{name: "net/tls/no-close-notify", run: nTLSNoCloseNotify},
	{name: "net/tls/truncated-record", run: nTLSTruncatedRecord},
	{name: "net/tls/plaintext-client", run: nTLSPlaintextClient},
	{name: "net/tls/write-eof-refused", run: nTLSWriteEOFRefused},
	{name: "net/tls/options", run: nTLSOptions},
	{name: "net/tls/no-leaks", run: nTLSNoLeaks, alone: true},
}

// tlsServer starts a TLS echo server (or one whose protocols mk makes) and
// returns it with its port.
func (n *nt) tlsServer(co *kernel.Co, srvs *serverProtos, mk func() *recProto, cfg *tls.Config, opts *kernel.ServerOptions) (*kernel.Server, string, error) {
	if mk == nil {
		mk = newEcho
	}
	var o kernel.ServerOptions
	if opts != nil {
		o = *opts
	}
	if cfg == nil {
		cfg = testkit.TLS(n).ServerConfig()
	}
	o.SSL = cfg
	srv, err := kernel.CreateServer(co, srvs.factory(mk), []string{"127.0.0.1"}, "0", &o)
	if err != nil {
		return nil, "", err
	}
	return srv, n.tcpPort(srv, 0), nil
}

// onTLSServer runs body on a new loop with a TLS server started as
// tlsServer starts it (mk, cfg, opts) and closed when body returns: the
// setup most TLS cases share. srvs lists the server's protocols.
func (n *nt) onTLSServer(what string, mk func() *recProto, cfg *tls.Config, opts *kernel.ServerOptions,
	body func(co *kernel.Co, port string, srvs *serverProtos) error) {
	l := n.newLoop()
	var srvs serverProtos
	n.run(l, what, func(co *kernel.Co) error {
		srv, port, err := n.tlsServer(co, &srvs, mk, cfg, opts)
		if err != nil {
			return err
		}
		defer srv.Close()
		return body(co, port, &srvs)
	})
}

// tlsDial connects with the client configuration given (nil: trusting the
// test CA) and returns what CreateConnection returned.
func tlsDial(co *kernel.Co, port string, cli *recProto, cfg *tls.Config, pki *testkit.PKI, opts *kernel.ConnOptions) (kernel.Transport, error) {
	var o kernel.ConnOptions
	if opts != nil {
		o = *opts
	}
	if cfg == nil {
		cfg = pki.ClientConfig()
	}
	o.SSL = cfg
	tr, _, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", port, &o)
	return tr, err
}

// nTLSRoundTrip: 1 B to 8 MiB through a TLS echo server at one protocol
// version, with the extra info both ends report.
func nTLSRoundTrip(n *nt, version uint16) {
	pki := testkit.TLS(n)
	scfg := pki.ServerConfig()
	scfg.MinVersion, scfg.MaxVersion = version, version
	scfg.NextProtos = []string{"h2", "http/1.1"}
	n.onTLSServer("tls echo round trips", nil, scfg, nil, func(co *kernel.Co, port string, srvs *serverProtos) error {
		for _, size := range roundTripSizes {
			want := pattern(size)
			cli := &recProto{}
			ccfg := pki.ClientConfig()
			ccfg.NextProtos = []string{"http/1.1", "h2"}
			tr, err := tlsDial(co, port, cli, ccfg, pki, nil)
			if err != nil {
				return fmt.Errorf("rule: a TLS client connects to a TLS server (size %d): %w", size, err)
			}
			require.Equal(n, 1, cli.made, "rule: ConnectionMade runs once the handshake has succeeded, before CreateConnection returns")
			v, _ := tr.GetExtraInfo("version")
			require.Equal(n, tls.VersionName(version), v, "rule: the negotiated version is the one both ends allow")
			alpn, _ := tr.GetExtraInfo("alpn_protocol")
			require.Equal(n, "h2", alpn, "rule: ALPN picks the server's preference among the client's offers")
			cipher, _ := tr.GetExtraInfo("cipher")
			require.NotEmpty(n, cipher, "rule: the cipher suite is reported")
			cert, _ := tr.GetExtraInfo("peercert")
			leaf, ok := cert.(*x509.Certificate)
			require.True(n, ok, "rule: peercert is the server's *x509.Certificate")
			require.Contains(n, leaf.IPAddresses[0].String(), "127.0.0.1")
			st, _ := tr.GetExtraInfo("ssl_object")
			require.IsType(n, tls.ConnectionState{}, st, "rule: ssl_object is the tls.ConnectionState")
			peer, _ := tr.GetExtraInfo("peername")
			require.NotNil(n, peer, "rule: the plain transport's extra info shows through")
			require.NoError(n, tr.Write(want))
			if err := n.waitUntil(co, fmt.Sprintf("rule: a %d-byte echo comes back through TLS", size), func() bool { return cli.data.Len() >= size }); err != nil {
				return err
			}
			require.True(n, bytes.Equal(want, cli.data.Bytes()), "rule: bytes arrive intact and in order (size %d)", size)
			require.NoError(n, tr.Close())
			if err := n.waitUntil(co, "rule: Close ends in ConnectionLost", func() bool { return cli.lost > 0 }); err != nil {
				return err
			}
			require.NoError(n, cli.lostErr, "rule: a clean TLS close reports ConnectionLost(nil)")
		}
		if err := n.waitUntil(co, "rule: the server side loses every connection", func() bool { return allLost(srvs.list) }); err != nil {
			return err
		}
		for _, s := range srvs.list {
			assert.Equal(n, 1, s.made, "rule: ConnectionMade once per connection")
			assert.Equal(n, 1, s.lost, "rule: ConnectionLost once per connection")
			v, _ := s.tr.GetExtraInfo("version")
			assert.Equal(n, tls.VersionName(version), v, "rule: the server reports the version too")
		}
		return nil
	})
}

// nTLSBufferedProtocol: a BufferedProtocol receives decrypted bytes in its
// own buffer.
func nTLSBufferedProtocol(n *nt) {
	pki := testkit.TLS(n)
	n.onTLSServer("tls into a buffered protocol", nil, nil, nil, func(co *kernel.Co, port string, _ *serverProtos) error {
		bp := &bufProto{buf: make([]byte, 100)}
		tr, _, err := kernel.CreateConnection(co, func() *bufProto { return bp }, "127.0.0.1", port, &kernel.ConnOptions{SSL: pki.ClientConfig()})
		if err != nil {
			return err
		}
		want := pattern(300 << 10)
		require.NoError(n, tr.Write(want))
		if err := n.waitUntil(co, "rule: a BufferedProtocol over TLS receives every byte", func() bool { return bp.got.Len() >= len(want) }); err != nil {
			return err
		}
		require.True(n, bytes.Equal(want, bp.got.Bytes()), "rule: bytes arrive intact through the protocol's buffer")
		tr.Close()
		return n.waitUntil(co, "rule: ConnectionLost", func() bool { return bp.lost == 1 })
	})
}

// nTLSClientCertificate: a server that requires a client certificate sees
// the client's; a client without one is refused and the server's protocol
// never hears of the connection.
func nTLSClientCertificate(n *nt) {
	pki := testkit.TLS(n)
	scfg := pki.ServerConfig()
	scfg.ClientAuth = tls.RequireAndVerifyClientCert
	scfg.ClientCAs = pki.CA.Pool()
	n.onTLSServer("client certificates", nil, scfg, nil, func(co *kernel.Co, port string, srvs *serverProtos) error {
		ccfg := pki.ClientConfig()
		ccfg.Certificates = []tls.Certificate{pki.Client.TLS}
		cli := &recProto{}
		tr, err := tlsDial(co, port, cli, ccfg, pki, nil)
		if err != nil {
			return fmt.Errorf("rule: a client with a certificate the server trusts connects: %w", err)
		}
		tr.Write([]byte("ping"))
		if err := n.waitUntil(co, "rule: data flows with client authentication", func() bool { return cli.data.String() == "ping" }); err != nil {
			return err
		}
		cert, _ := srvs.list[0].tr.GetExtraInfo("peercert")
		leaf, ok := cert.(*x509.Certificate)
		require.True(n, ok, "rule: the server's peercert is the client's certificate")
		require.Equal(n, "test client", leaf.Subject.CommonName)
		tr.Close()

		// Without a certificate: TLS 1.3 lets the client finish first, so
		// the refusal may come as the connection's loss rather than as
		// CreateConnection's error; either way it is an error.
		anon := &recProto{}
		tr, err = tlsDial(co, port, anon, nil, pki, nil)
		if err == nil {
			tr.Write([]byte("x"))
			if err := n.waitUntil(co, "rule: a client without the required certificate loses the connection", func() bool { return anon.lost > 0 }); err != nil {
				return err
			}
			require.Error(n, anon.lostErr, "rule: the refusal reaches the client as an error")
		}
		require.Equal(n, 0, anon.n, "rule: a refused client receives no application data")
		require.Len(n, srvs.list, 2)
		return n.waitUntil(co, "rule: the server's protocol never hears of a refused client", func() bool {
			return srvs.list[1].made == 0 && srvs.list[1].lost == 0
		})
	})
}

// tlsRefused connects with cfg and opts and returns the error, checking
// that the client's protocol was never told of a connection.
func (n *nt) tlsRefused(co *kernel.Co, port string, cfg *tls.Config, opts *kernel.ConnOptions) error {
	cli := &recProto{}
	tr, err := tlsDial(co, port, cli, cfg, testkit.TLS(n), opts)
	if err == nil {
		tr.Close()
		return nil
	}
	require.Equal(n, 0, cli.made, "rule: a failed handshake never calls ConnectionMade")
	return err
}

func nTLSHostnameMismatch(n *nt) {
	n.onTLSServer("hostname mismatch", nil, nil, nil, func(co *kernel.Co, port string, _ *serverProtos) error {
		name := "www.example.com"
		err := n.tlsRefused(co, port, nil, &kernel.ConnOptions{ServerHostname: &name})
		var host x509.HostnameError
		require.ErrorAs(n, err, &host, "rule: a certificate for another name is refused, with the name in the error")
		require.Contains(n, err.Error(), "www.example.com")
		return nil
	})
}

func nTLSUntrusted(n *nt) {
	n.onTLSServer("untrusted certificate", nil, nil, nil, func(co *kernel.Co, port string, _ *serverProtos) error {
		other, err := certs.NewAuthority("another CA", time.Hour)
		n.fixture("second CA", err)
		err = n.tlsRefused(co, port, &tls.Config{RootCAs: other.Pool()}, nil)
		var unknown x509.UnknownAuthorityError
		require.ErrorAs(n, err, &unknown, "rule: a certificate from an authority the client does not trust is refused")
		return nil
	})
}

func nTLSExpired(n *nt) {
	pki := testkit.TLS(n)
	old, err := pki.CA.Issue(certs.Leaf{Hosts: []string{"127.0.0.1"}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	n.fixture("expired certificate", err)
	n.onTLSServer("expired certificate", nil, &tls.Config{Certificates: []tls.Certificate{old.TLS}}, nil, func(co *kernel.Co, port string, _ *serverProtos) error {
		err = n.tlsRefused(co, port, nil, nil)
		var invalid x509.CertificateInvalidError
		require.ErrorAs(n, err, &invalid, "rule: an expired certificate is refused")
		require.Equal(n, x509.Expired, invalid.Reason, "rule: the error says it expired")
		return nil
	})
}

// silent accepts connections and never answers.
func silent() *recProto { return &recProto{keepOpen: true} }

// nTLSHandshakeTimeout: a client whose server never answers gives up after
// SSLHandshakeTimeout with a deadline error; a server whose client never
// speaks drops it after its own.
func nTLSHandshakeTimeout(n *nt) {
	l := n.newLoop()
	pki := testkit.TLS(n)
	var srvs, tlsSrvs serverProtos
	n.run(l, "handshake timeouts", func(co *kernel.Co) error {
		plain, err := kernel.CreateServer(co, srvs.factory(silent), []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer plain.Close()
		start := time.Now()
		cli := &recProto{}
		_, err = tlsDial(co, n.tcpPort(plain, 0), cli, nil, pki, &kernel.ConnOptions{SSLHandshakeTimeout: 200 * time.Millisecond})
		require.ErrorIs(n, err, os.ErrDeadlineExceeded, "rule: a handshake past SSLHandshakeTimeout fails with a deadline error")
		require.Less(n, time.Since(start), 10*time.Second, "rule: the timeout is honoured, not the 60 s default")
		require.Equal(n, 0, cli.made)
		if err := n.waitUntil(co, "rule: the timed-out connection is closed", func() bool {
			return len(srvs.list) == 1 && (srvs.list[0].eofs > 0 || srvs.list[0].lost > 0)
		}); err != nil {
			return err
		}

		srv, port, err := n.tlsServer(co, &tlsSrvs, nil, nil, &kernel.ServerOptions{SSLHandshakeTimeout: 200 * time.Millisecond})
		if err != nil {
			return err
		}
		defer srv.Close()
		mute := &recProto{keepOpen: true}
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return mute }, "127.0.0.1", port, nil)
		if err != nil {
			return err
		}
		defer tr.Close()
		if err := n.waitUntil(co, "rule: a TLS server drops a client that does not complete its handshake in time", func() bool { return mute.eofs > 0 || mute.lost > 0 }); err != nil {
			return err
		}
		require.Equal(n, 0, tlsSrvs.list[0].made, "rule: the server's protocol never hears of it")
		return nil
	})
}

// nTLSCloseNotify: Close sends close_notify; the peer's protocol hears
// EOFReceived, then both lose the connection cleanly.
func nTLSCloseNotify(n *nt) {
	pki := testkit.TLS(n)
	n.onTLSServer("close_notify", silent, nil, nil, func(co *kernel.Co, port string, srvs *serverProtos) error {
		cli := &recProto{}
		tr, err := tlsDial(co, port, cli, nil, pki, nil)
		if err != nil {
			return err
		}
		tr.Write([]byte("bye"))
		require.NoError(n, tr.Close())
		require.True(n, tr.IsClosing(), "rule: a closing TLS transport says so")
		require.ErrorIs(n, tr.Write([]byte("x")), kernel.ErrTransportClosed, "rule: Write after Close fails")
		if err := n.waitUntil(co, "rule: the server's protocol hears the close as EOF, then loses the connection", func() bool {
			return len(srvs.list) == 1 && srvs.list[0].lost == 1
		}); err != nil {
			return err
		}
		s := srvs.list[0]
		require.Equal(n, "bye", s.data.String(), "rule: data written before Close arrives before the close")
		require.Equal(n, 1, s.eofs, "rule: close_notify reaches the peer's protocol as EOFReceived")
		require.NoError(n, s.lostErr, "rule: a close_notify is a clean end")
		require.Equal(n, []string{"made", "eof", "lost"}, s.madeOrder)
		if err := n.waitUntil(co, "rule: the closing side loses the connection", func() bool { return cli.lost == 1 }); err != nil {
			return err
		}
		require.NoError(n, cli.lostErr, "rule: a shutdown the peer answered is clean")
		return nil
	})
}

// goTLSPeer accepts one connection on a Go listener, completes the server
// handshake with crypto/tls, and hands the connection to fn; it returns
// the address to dial.
func goTLSPeer(n *nt, cfg *tls.Config, fn func(raw net.Conn, c *tls.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	n.fixture("go listener", err)
	done := make(chan struct{})
	n.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		defer raw.Close()
		c := tls.Server(raw, cfg)
		raw.SetDeadline(time.Now().Add(netSettle))
		if c.Handshake() != nil {
			return
		}
		fn(raw, c)
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// goTLSClient dials port with crypto/tls, trusting the test CA, completes
// the handshake and hands the connection to fn, off the loop.
func goTLSClient(co *kernel.Co, n *nt, port string, fn func(raw net.Conn, c *tls.Conn) error) error {
	pki := testkit.TLS(n)
	_, err := testkit.OffLoop(co, func() (struct{}, error) {
		raw, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			return struct{}{}, err
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(netSettle))
		c := tls.Client(raw, &tls.Config{RootCAs: pki.CA.Pool(), ServerName: "127.0.0.1"})
		if err := c.Handshake(); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, fn(raw, c)
	})
	return err
}

// nTLSShutdownTimeout: after Close, a peer that never answers close_notify
// is cut off at SSLShutdownTimeout and the protocol hears a deadline error.
func nTLSShutdownTimeout(n *nt) {
	l := n.newLoop()
	pki := testkit.TLS(n)
	release := make(chan struct{})
	port := goTLSPeer(n, pki.ServerConfig(), func(net.Conn, *tls.Conn) { <-release })
	n.Cleanup(func() { close(release) })
	n.run(l, "shutdown timeout", func(co *kernel.Co) error {
		cli := &recProto{}
		tr, err := tlsDial(co, port, cli, nil, pki, &kernel.ConnOptions{SSLShutdownTimeout: 200 * time.Millisecond})
		if err != nil {
			return err
		}
		start := time.Now()
		tr.Close()
		if err := n.waitUntil(co, "rule: a shutdown the peer never answers ends at SSLShutdownTimeout", func() bool { return cli.lost == 1 }); err != nil {
			return err
		}
		require.ErrorIs(n, cli.lostErr, os.ErrDeadlineExceeded, "rule: ConnectionLost says the shutdown timed out")
		require.Less(n, time.Since(start), 10*time.Second)
		return nil
	})
}

// startTLSServer speaks plaintext until it reads "STARTTLS\n", answers
// "OK\n", upgrades its end, then echoes through TLS.
type startTLSServer struct {
	recProto
	cfg      *tls.Config
	loop     *kernel.Loop
	upgraded chan error
	secure   bool
}

func (p *startTLSServer) DataReceived(b []byte) {
	p.recProto.DataReceived(b)
	if p.secure {
		p.tr.Write(b) // echo, encrypted
		return
	}
	if p.data.String() != "STARTTLS\n" {
		return
	}
	p.data.Reset()
	p.tr.PauseReading() // nothing reaches this protocol in plaintext from here
	p.tr.Write([]byte("OK\n"))
	plain := p.tr
	kernel.CreateTask(p.loop, func(co *kernel.Co) (struct{}, error) {
		tr, err := kernel.StartTLS(co, plain, p, p.cfg, &kernel.StartTLSOptions{ServerSide: true})
		if err == nil {
			p.tr, p.secure = tr, true
		}
		p.upgraded <- err
		return struct{}{}, err
	})
}

// nTLSStartTLS: a plaintext exchange, then both ends upgrade with StartTLS
// and the protocol goes on over TLS on the returned transports.
func nTLSStartTLS(n *nt) {
	l := n.newLoop()
	pki := testkit.TLS(n)
	n.run(l, "start_tls after plaintext", func(co *kernel.Co) error {
		sp := &startTLSServer{cfg: pki.ServerConfig(), loop: l, upgraded: make(chan error, 1)}
		srv, err := kernel.CreateServer(co, func() *startTLSServer { return sp }, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		cli := &recProto{}
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return cli }, "127.0.0.1", n.tcpPort(srv, 0), nil)
		if err != nil {
			return err
		}
		tr.Write([]byte("STARTTLS\n"))
		if err := n.waitUntil(co, "rule: the plaintext exchange before the upgrade works", func() bool { return cli.data.String() == "OK\n" }); err != nil {
			return err
		}
		cli.data.Reset()
		host := "localhost"
		ttr, err := kernel.StartTLS(co, tr, cli, pki.ClientConfig(), &kernel.StartTLSOptions{ServerHostname: &host})
		if err != nil {
			return fmt.Errorf("rule: StartTLS upgrades a live client connection: %w", err)
		}
		require.Equal(n, 1, cli.made, "rule: StartTLS does not call ConnectionMade again")
		if err := n.waitUntil(co, "rule: the server's StartTLS completes", func() bool { return len(sp.upgraded) > 0 }); err != nil {
			return err
		}
		require.NoError(n, <-sp.upgraded, "rule: StartTLS upgrades the server's end")
		v, _ := ttr.GetExtraInfo("version")
		require.NotEmpty(n, v, "rule: the new transport is a TLS transport")
		ttr.Write([]byte("secret"))
		if err := n.waitUntil(co, "rule: data flows over TLS after StartTLS", func() bool { return cli.data.String() == "secret" }); err != nil {
			return err
		}
		ttr.Close()
		return n.waitUntil(co, "rule: ConnectionLost once, on the upgraded connection", func() bool { return cli.lost == 1 && sp.lost == 1 })
	})
}

// nTLSBackPressure: flow control passes through the layer both ways. A
// client that pauses reading stops reading the socket, so the server's
// writes back up until its protocol hears PauseWriting; resuming delivers
// everything and the server hears ResumeWriting.
func nTLSBackPressure(n *nt) {
	l := n.newLoop()
	pki := testkit.TLS(n)
	const size = 8 << 20
	var srvs serverProtos
	n.run(l, "tls back-pressure", func(co *kernel.Co) error {
		srv, port, err := n.tlsServer(co, &srvs, func() *recProto {
			return &recProto{onMade: func(p *recProto) { p.tr.Write(pattern(size)) }}
		}, nil, nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		cli := &recProto{discard: true, onMade: func(p *recProto) { p.tr.PauseReading() }}
		tr, err := tlsDial(co, port, cli, nil, pki, nil)
		if err != nil {
			return err
		}
		require.False(n, tr.IsReading(), "rule: a paused TLS transport says so")
		if err := n.waitUntil(co, "rule: a peer that does not read makes the writer's protocol hear PauseWriting", func() bool {
			return len(srvs.list) == 1 && srvs.list[0].paused == 1
		}); err != nil {
			return err
		}
		require.Less(n, cli.n, size, "rule: a paused TLS transport delivers nothing more")
		require.NoError(n, tr.ResumeReading())
		if err := n.waitUntil(co, "rule: after ResumeReading every byte arrives", func() bool { return cli.n == size }); err != nil {
			return err
		}
		if err := n.waitUntil(co, "rule: the writer's protocol hears ResumeWriting", func() bool { return srvs.list[0].resumed == 1 }); err != nil {
			return err
		}
		tr.Close()
		return n.waitUntil(co, "rule: ConnectionLost", func() bool { return cli.lost == 1 })
	})
}

// nTLSNoCloseNotify: a peer that closes the TCP connection at a record
// boundary without close_notify ends the stream as EOF (asyncio and Go's
// net/http accept it; a protocol that needs to tell truncation from a
// finished stream frames its messages).
func nTLSNoCloseNotify(n *nt) {
	n.onTLSServer("peer closes without close_notify", silent, nil, nil, func(co *kernel.Co, port string, srvs *serverProtos) error {
		err := goTLSClient(co, n, port, func(raw net.Conn, c *tls.Conn) error {
			if _, err := c.Write([]byte("hi")); err != nil {
				return err
			}
			return raw.Close() // TCP FIN, no close_notify
		})
		if err != nil {
			return err
		}
		if err := n.waitUntil(co, "rule: a TCP close without close_notify ends the TLS connection", func() bool {
			return len(srvs.list) == 1 && srvs.list[0].lost == 1
		}); err != nil {
			return err
		}
		s := srvs.list[0]
		require.Equal(n, "hi", s.data.String(), "rule: data before the close arrives")
		require.Equal(n, 1, s.eofs, "rule: the end reaches the protocol as EOFReceived")
		return nil
	})
}

// nTLSTruncatedRecord: a record cut short by the peer's close is an error,
// and no part of it is delivered.
func nTLSTruncatedRecord(n *nt) {
	n.onTLSServer("truncated record", silent, nil, nil, func(co *kernel.Co, port string, srvs *serverProtos) error {
		err := goTLSClient(co, n, port, func(raw net.Conn, c *tls.Conn) error {
			// An application-data record header announcing 64 bytes, then 10.
			if _, err := raw.Write(append([]byte{0x17, 0x03, 0x03, 0x00, 0x40}, make([]byte, 10)...)); err != nil {
				return err
			}
			return raw.Close()
		})
		if err != nil {
			return err
		}
		if err := n.waitUntil(co, "rule: a truncated record ends the connection", func() bool {
			return len(srvs.list) == 1 && srvs.list[0].lost == 1
		}); err != nil {
			return err
		}
		s := srvs.list[0]
		require.Error(n, s.lostErr, "rule: a record cut short is an error, not a clean end")
		require.ErrorIs(n, s.lostErr, syscall.ECONNRESET, "rule: the error says the connection was cut")
		require.Equal(n, 0, s.n, "rule: nothing of a truncated record is delivered")
		return nil
	})
}

// nTLSPlaintextClient: a plaintext client on a TLS port is dropped without
// the server's protocol hearing of it, and the server goes on serving.
func nTLSPlaintextClient(n *nt) {
	pki := testkit.TLS(n)
	n.onTLSServer("plaintext client on a TLS port", nil, nil, nil, func(co *kernel.Co, port string, srvs *serverProtos) error {
		plain := &recProto{keepOpen: true}
		tr, _, err := kernel.CreateConnection(co, func() *recProto { return plain }, "127.0.0.1", port, nil)
		if err != nil {
			return err
		}
		tr.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		if err := n.waitUntil(co, "rule: the server drops a plaintext client", func() bool { return plain.eofs > 0 || plain.lost > 0 }); err != nil {
			return err
		}
		tr.Close()
		require.Equal(n, 0, srvs.list[0].made, "rule: the server's protocol never hears of a client that failed its handshake")
		cli := &recProto{}
		ttr, err := tlsDial(co, port, cli, nil, pki, nil)
		if err != nil {
			return fmt.Errorf("rule: the server still serves TLS clients after a plaintext one: %w", err)
		}
		ttr.Write([]byte("ok"))
		if err := n.waitUntil(co, "rule: echo after the bad client", func() bool { return cli.data.String() == "ok" }); err != nil {
			return err
		}
		ttr.Close()
		return n.waitUntil(co, "rule: ConnectionLost", func() bool { return cli.lost == 1 })
	})
}

func nTLSWriteEOFRefused(n *nt) {
	pki := testkit.TLS(n)
	n.onTLSServer("write_eof on TLS", nil, nil, nil, func(co *kernel.Co, port string, _ *serverProtos) error {
		cli := &recProto{}
		tr, err := tlsDial(co, port, cli, nil, pki, nil)
		if err != nil {
			return err
		}
		defer tr.Close()
		require.False(n, tr.CanWriteEOF(), "rule: a TLS transport cannot half-close")
		require.ErrorIs(n, tr.WriteEOF(), kernel.ErrTLSNoHalfClose, "rule: WriteEOF is refused on TLS, as asyncio refuses it")
		tr.Write([]byte("still open"))
		return n.waitUntil(co, "rule: the refused WriteEOF leaves the connection usable", func() bool { return cli.data.String() == "still open" })
	})
}

// nTLSOptions: asyncio's argument rules.
func nTLSOptions(n *nt) {
	l := n.newLoop()
	pki := testkit.TLS(n)
	var srvs serverProtos
	n.run(l, "TLS option rules", func(co *kernel.Co) error {
		factory := func() *recProto { return &recProto{} }
		host := "localhost"
		_, _, err := kernel.CreateConnection(co, factory, "127.0.0.1", "1", &kernel.ConnOptions{ServerHostname: &host})
		require.ErrorIs(n, err, kernel.ErrInvalidArgument, "rule: ServerHostname without SSL is an error")
		_, _, err = kernel.CreateConnection(co, factory, "127.0.0.1", "1", &kernel.ConnOptions{SSLHandshakeTimeout: time.Second})
		require.ErrorIs(n, err, kernel.ErrInvalidArgument, "rule: SSLHandshakeTimeout without SSL is an error")
		empty := ""
		_, _, err = kernel.CreateConnection(co, factory, "127.0.0.1", "1", &kernel.ConnOptions{SSL: pki.ClientConfig(), ServerHostname: &empty})
		require.ErrorIs(n, err, kernel.ErrInvalidArgument, "rule: an empty ServerHostname needs a config that does not verify names")
		_, _, err = kernel.CreateUnixConnection(co, factory, "/nonexistent", &kernel.ConnOptions{SSL: pki.ClientConfig()})
		require.ErrorIs(n, err, kernel.ErrInvalidArgument, "rule: a Unix TLS connection needs a ServerHostname")
		_, err = kernel.CreateServer(co, srvs.factory(newEcho), []string{"127.0.0.1"}, "0", &kernel.ServerOptions{SSL: &tls.Config{}})
		require.ErrorIs(n, err, kernel.ErrInvalidArgument, "rule: a TLS server needs a certificate")
		_, err = kernel.CreateServer(co, srvs.factory(newEcho), []string{"127.0.0.1"}, "0", &kernel.ServerOptions{SSLShutdownTimeout: time.Second})
		require.ErrorIs(n, err, kernel.ErrInvalidArgument, "rule: SSLShutdownTimeout without SSL is an error")
		return nil
	})
}

// openFDs counts this process's descriptors.
func openFDs(n *nt) int {
	ents, err := os.ReadDir("/proc/self/fd")
	n.fixture("list /proc/self/fd", err)
	return len(ents)
}

// nTLSNoLeaks: handshakes, echoes and closes leave no goroutine and no
// descriptor behind: the layer runs no goroutine of its own.
func nTLSNoLeaks(n *nt) {
	l := n.newLoop()
	pki := testkit.TLS(n)
	var srvs serverProtos
	n.run(l, "no leaks", func(co *kernel.Co) error {
		srv, port, err := n.tlsServer(co, &srvs, nil, nil, nil)
		if err != nil {
			return err
		}
		// Warm up: the first connection builds the loop's buffers and any
		// goroutine the back-end keeps for its life.
		round := func() error {
			cli := &recProto{}
			tr, err := tlsDial(co, port, cli, nil, pki, nil)
			if err != nil {
				return err
			}
			tr.Write([]byte("x"))
			if err := n.waitUntil(co, "echo", func() bool { return cli.data.Len() == 1 }); err != nil {
				return err
			}
			tr.Close()
			return n.waitUntil(co, "lost", func() bool { return cli.lost == 1 })
		}
		if err := round(); err != nil {
			return err
		}
		if err := n.waitUntil(co, "settled", func() bool { return allLost(srvs.list) }); err != nil {
			return err
		}
		g0, fd0 := runtime.NumGoroutine(), openFDs(n)
		for range 20 {
			if err := round(); err != nil {
				return err
			}
		}
		if err := n.waitUntil(co, "rule: every server-side connection ends", func() bool { return allLost(srvs.list) }); err != nil {
			return err
		}
		if err := n.waitUntil(co, "rule: TLS connections leave no goroutine and no descriptor behind", func() bool {
			return runtime.NumGoroutine() <= g0 && openFDs(n) <= fd0
		}); err != nil {
			return fmt.Errorf("%w (goroutines %d → %d, descriptors %d → %d)", err, g0, runtime.NumGoroutine(), fd0, openFDs(n))
		}
		srv.Close()
		return nil
	})
}

// nTLSUnix: TLS over Unix sockets, where the name to verify cannot come
// from a host and is given as ServerHostname.
func nTLSUnix(n *nt) {
	l := n.newLoop()
	pki := testkit.TLS(n)
	var srvs serverProtos
	path := n.tempDir() + "/tls.sock"
	n.run(l, "tls over unix sockets", func(co *kernel.Co) error {
		srv, err := kernel.CreateUnixServer(co, srvs.factory(newEcho), path, &kernel.ServerOptions{SSL: pki.ServerConfig()})
		if err != nil {
			return err
		}
		defer srv.Close()
		cli := &recProto{}
		host := "localhost"
		tr, _, err := kernel.CreateUnixConnection(co, func() *recProto { return cli }, path, &kernel.ConnOptions{SSL: pki.ClientConfig(), ServerHostname: &host})
		if err != nil {
			return fmt.Errorf("rule: a TLS client connects over a Unix socket: %w", err)
		}
		tr.Write([]byte("unix and tls"))
		if err := n.waitUntil(co, "rule: echo over TLS on a Unix socket", func() bool { return cli.data.String() == "unix and tls" }); err != nil {
			return err
		}
		tr.Close()
		return n.waitUntil(co, "rule: ConnectionLost", func() bool { return cli.lost == 1 })
	})
}
