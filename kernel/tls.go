package kernel

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"
)

// StartTLSOptions are start_tls's keyword arguments.
type StartTLSOptions struct {
	// ServerSide upgrades the server's end of a connection (asyncio:
	// server_side=True); the tls.Config must then carry a certificate.
	ServerSide bool
	// ServerHostname is the name the server's certificate is checked
	// against, as ConnOptions.ServerHostname; on a client, nil means the
	// config's ServerName, which StartTLS then requires.
	ServerHostname *string
	// SSLHandshakeTimeout bounds the handshake (0: 60 s);
	// SSLShutdownTimeout bounds the wait for the peer's close_notify after
	// Close (0: 30 s).
	SSLHandshakeTimeout, SSLShutdownTimeout time.Duration
}

// StartTLS upgrades a live connection to TLS (asyncio: loop.start_tls) and
// returns the new transport, which proto must use from now on; t must not
// be used again. proto's ConnectionMade is not called again: it knows the
// connection already. If the handshake fails, t is closed and the error
// says why (errors.Is(err, os.ErrDeadlineExceeded) after the timeout).
func StartTLS(co *Co, t Transport, proto BaseProtocol, config *tls.Config, opts *StartTLSOptions) (Transport, error) {
	var o StartTLSOptions
	if opts != nil {
		o = *opts
	}
	if t == nil || proto == nil {
		return nil, fmt.Errorf("start tls: nil transport or protocol: %w", ErrInvalidArgument)
	}
	var setup *tlsSetup
	var err error
	if o.ServerSide {
		if o.ServerHostname != nil {
			return nil, fmt.Errorf("start tls: ServerHostname is for the client side: %w", ErrInvalidArgument)
		}
		setup, err = serverTLS(config, o.SSLHandshakeTimeout, o.SSLShutdownTimeout)
	} else {
		setup, err = clientTLS(config, "", o.ServerHostname, o.SSLHandshakeTimeout, o.SSLShutdownTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("start tls: %w", err)
	}
	if t.IsClosing() {
		return nil, fmt.Errorf("start tls: %w", ErrTransportClosed)
	}
	setup.upgrade = true
	l := co.Loop()
	waiter := CreateFuture[struct{}](l)
	layer, err := newTLSProtocol(l, proto, *setup, waiter)
	if err != nil {
		return nil, fmt.Errorf("start tls: %w", err)
	}
	// As asyncio: stop reading, switch protocols, then start the handshake
	// and resume reading from the loop, so no byte reaches the old protocol.
	t.PauseReading()
	t.SetProtocol(layer)
	if _, err := l.CallSoon(func() {
		layer.ConnectionMade(t)
		t.ResumeReading()
	}); err != nil {
		return nil, fmt.Errorf("start tls: %w", err)
	}
	if _, err := waiter.Await(co); err != nil {
		t.Close()
		return nil, fmt.Errorf("start tls: %w", err)
	}
	return layer.app, nil
}

// clientTLS validates a client's TLS options and settles the name the
// server's certificate is matched against, with asyncio's rules: the
// explicit ServerHostname, else the config's ServerName, else the host
// connected to. An empty ServerHostname turns hostname matching off, which
// the config must agree to (InsecureSkipVerify, with a VerifyConnection of
// its own to keep checking the chain): asyncio refuses an empty server_hostname
// while check_hostname is on.
func clientTLS(config *tls.Config, host string, hostname *string, handshake, shutdown time.Duration) (*tlsSetup, error) {
	if config == nil {
		if hostname != nil || handshake != 0 || shutdown != 0 {
			return nil, fmt.Errorf("ServerHostname, SSLHandshakeTimeout and SSLShutdownTimeout are only meaningful with SSL: %w", ErrInvalidArgument)
		}
		return nil, nil
	}
	if handshake < 0 || shutdown < 0 {
		return nil, fmt.Errorf("negative TLS timeout: %w", ErrInvalidArgument)
	}
	c := config.Clone()
	switch {
	case hostname != nil && *hostname == "":
		if !c.InsecureSkipVerify {
			return nil, fmt.Errorf("an empty ServerHostname disables hostname matching, but the tls.Config verifies the server (set InsecureSkipVerify, and VerifyConnection to keep checking the chain, to say so): %w", ErrInvalidArgument)
		}
		c.ServerName = ""
	case hostname != nil:
		c.ServerName = *hostname
	case c.ServerName != "":
	case host != "":
		c.ServerName = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	default:
		return nil, fmt.Errorf("a TLS connection without a host needs ServerHostname (or tls.Config.ServerName): %w", ErrInvalidArgument)
	}
	return &tlsSetup{config: c, handshakeTimeout: handshake, shutdownTimeout: shutdown}, nil
}

// serverTLS validates a server's TLS options.
func serverTLS(config *tls.Config, handshake, shutdown time.Duration) (*tlsSetup, error) {
	if config == nil {
		if handshake != 0 || shutdown != 0 {
			return nil, fmt.Errorf("SSLHandshakeTimeout and SSLShutdownTimeout are only meaningful with SSL: %w", ErrInvalidArgument)
		}
		return nil, nil
	}
	if handshake < 0 || shutdown < 0 {
		return nil, fmt.Errorf("negative TLS timeout: %w", ErrInvalidArgument)
	}
	if len(config.Certificates) == 0 && config.GetCertificate == nil && config.GetConfigForClient == nil {
		return nil, fmt.Errorf("a TLS server's tls.Config needs Certificates, GetCertificate or GetConfigForClient: %w", ErrInvalidArgument)
	}
	return &tlsSetup{config: config, serverSide: true, handshakeTimeout: handshake, shutdownTimeout: shutdown}, nil
}

// startConn makes the transport for a connected socket: plain, or TLS
// over plain when setup says so, returning once the handshake is done.
func startConn[P BaseProtocol](co *Co, factory func() P, sock *Socket, setup *tlsSetup) (Transport, P, error) {
	if setup == nil {
		return startTransport(co, factory, sock)
	}
	var zero P
	l := co.Loop()
	p, err := callGuarded(func() (P, error) { return factory(), nil })
	if err != nil {
		sock.Close()
		return nil, zero, fmt.Errorf("protocol factory: %w", err)
	}
	waiter := CreateFuture[struct{}](l)
	layer, err := newTLSProtocol(l, p, *setup, waiter)
	if err != nil {
		sock.Close()
		return nil, zero, err
	}
	plain, err := newStreamTransport(l, sock, layer, nil, nil, nil)
	if err != nil {
		sock.Close()
		return nil, zero, err
	}
	if _, err := waiter.Await(co); err != nil {
		plain.Abort()
		return nil, zero, err
	}
	return layer.app, p, nil
}
