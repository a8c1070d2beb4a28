package serve

import (
	"errors"
	"time"
)

// Limits bound what one connection may cost the server: how long it may
// hold a connection without progress, and how much it may ask the server to
// read. Every limit is logged when it fires, with the peer's address. Zero
// disables a limit.
type Limits struct {
	// HeaderTimeout (http) bounds the whole request head, counted from the
	// first byte of the request (from the accept for the first one): a
	// client that trickles its head (slowloris) is answered 408 and closed.
	HeaderTimeout time.Duration
	// IdleTimeout closes a connection that is waiting for its next request
	// (http keep-alive) or has carried no data in either direction (echo,
	// proxy) for this long.
	IdleTimeout time.Duration
	// BodyTimeout (http) bounds the whole request body, counted from the
	// end of its head.
	BodyTimeout time.Duration
	// SendTimeout (http) closes a connection whose client takes longer
	// than this to accept each sendChunk of a static file: a client that
	// stops reading mid-file.
	SendTimeout time.Duration
	// MaxBodyBytes (http) answers a request announcing a longer body 413
	// before reading any of it.
	MaxBodyBytes int64
	// MaxHeaderBytes and MaxHeaders (http) bound the request head's size,
	// through the blank line, and its number of header fields; beyond them
	// the request is answered 431.
	MaxHeaderBytes int
	MaxHeaders     int
	// FollowSymlinks (http) serves files through symbolic links that leave
	// the root directory; by default such a request is answered 403.
	FollowSymlinks bool
	// ConnectTimeout (proxy) bounds the connection to the upstream.
	ConnectTimeout time.Duration
}

// Default limits. They are what Go and nginx users would expect: the header
// timeout matches the attack it is for (a slow head), the idle timeouts are
// long enough for a browser's keep-alive and for an interactive session
// through the proxy, and the body limit is nginx's client_max_body_size for a
// server that serves only GET and HEAD.
const (
	DefaultHeaderTimeout     = 20 * time.Second
	DefaultHTTPIdleTimeout   = 60 * time.Second
	DefaultStreamIdleTimeout = 5 * time.Minute // echo and proxy
	DefaultBodyTimeout       = 60 * time.Second
	DefaultSendTimeout       = 60 * time.Second
	DefaultMaxBodyBytes      = 1 << 20
	DefaultMaxHeaderBytes    = defaultMaxHeaderBytes
	DefaultMaxHeaders        = defaultMaxHeaders
	DefaultConnectTimeout    = 10 * time.Second
)

// DefaultLimits returns the limits a server of kind gets when none are set.
func DefaultLimits(kind string) Limits {
	l := Limits{
		HeaderTimeout:  DefaultHeaderTimeout,
		IdleTimeout:    DefaultStreamIdleTimeout,
		BodyTimeout:    DefaultBodyTimeout,
		SendTimeout:    DefaultSendTimeout,
		MaxBodyBytes:   DefaultMaxBodyBytes,
		MaxHeaderBytes: DefaultMaxHeaderBytes,
		MaxHeaders:     DefaultMaxHeaders,
		ConnectTimeout: DefaultConnectTimeout,
	}
	if kind == "http" {
		l.IdleTimeout = DefaultHTTPIdleTimeout
	}
	return l
}

func (l Limits) validate() error {
	if l.HeaderTimeout < 0 || l.IdleTimeout < 0 || l.BodyTimeout < 0 || l.SendTimeout < 0 || l.ConnectTimeout < 0 {
		return errors.New("serve: a timeout cannot be negative (0 disables it)")
	}
	if l.MaxBodyBytes < 0 || l.MaxHeaderBytes < 0 || l.MaxHeaders < 0 {
		return errors.New("serve: a size limit cannot be negative (0 disables it)")
	}
	return nil
}

// timeouts lists the positive timeouts, for the sweep's tick.
func (l Limits) timeouts() []time.Duration {
	var ds []time.Duration
	for _, d := range []time.Duration{l.HeaderTimeout, l.IdleTimeout, l.BodyTimeout, l.SendTimeout, l.ConnectTimeout, lingerTimeout} {
		if d > 0 {
			ds = append(ds, d)
		}
	}
	return ds
}

// lingerTimeout is how long a connection refused with an error status keeps
// reading (and discarding) after its write side is shut, so that the
// client's unread request bytes do not turn the close into a reset that
// destroys the response before the client reads it.
const lingerTimeout = 2 * time.Second
