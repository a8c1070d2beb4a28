package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/loopkernel/loopkernel/internal/echobench"
	"github.com/loopkernel/loopkernel/internal/serve"
)

var serveOpts struct {
	addr     string
	upstream string
	root     string
	loops    int
	profile  string
	limits   serve.Limits
	idle     kindDefault // --idle-timeout: its default depends on the server

	tlsCert, tlsKey          string
	upstreamTLS              bool
	upstreamCA, upstreamName string
}

// kindDefault is a duration flag whose default depends on the server being
// run; unset, it prints no "(default ...)" of its own, since its usage text
// gives the defaults.
type kindDefault struct {
	d   time.Duration
	set bool
}

func (k *kindDefault) String() string {
	if k == nil || !k.set {
		return ""
	}
	return k.d.String()
}

func (k *kindDefault) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	k.d, k.set = d, true
	return nil
}

var serveCmd = &command{
	name:     "serve",
	synopsis: "echo|http|proxy|floor|go-net",
	summary:  "serve real traffic: echo, HTTP/1.1, TCP proxy (and the bench's reference servers)",
	help: `Servers:
  echo     writes back what it receives
  http     HTTP/1.1 with keep-alive: GET / or /hello answers a greeting,
           /static/NAME sends NAME from --root with sendfile(2)
  proxy    relays each connection to --upstream, half-closes included
  floor    the bench's yardstick: a raw epoll echo loop, no loop kernel
  go-net   the bench's Go reference: net with a goroutine per connection

--addr is host:port or unix:PATH (unix:@NAME for an abstract name). Once
listening, each bound address is printed as "LISTENING ADDR". SIGINT or
SIGTERM shuts down gracefully: no new connections, buffered data flushed,
stragglers aborted after 5 s.

Limits (0 disables each): a connection that trickles its request head, sits
idle, announces a body over the limit or framed ambiguously (Content-Length
with Transfer-Encoding, conflicting lengths), or asks for a file through a
symlink leaving --root is answered (408, 413, 400, 431, 403) or closed, and
the event is logged with the peer's address (at most 20 lines a second per
loop; the rest are counted). See docs/serve.md.`,
	flags: func(fs *flag.FlagSet) {
		fs.StringVar(&serveOpts.addr, "addr", "127.0.0.1:8000", "listen `ADDR`: host:port or unix:PATH")
		fs.StringVar(&serveOpts.upstream, "upstream", "", "proxy: forward to `ADDR` (host:port or unix:PATH)")
		fs.StringVar(&serveOpts.root, "root", "", "http: serve files below `DIR` at /static/")
		fs.IntVar(&serveOpts.loops, "loops", 1, "run `N` loops (one per core) sharing the port with SO_REUSEPORT")
		lim := &serveOpts.limits
		serveOpts.idle = kindDefault{}
		fs.DurationVar(&lim.HeaderTimeout, "header-timeout", serve.DefaultHeaderTimeout,
			"http: the whole request head must arrive within `D` (from its first byte; from the accept for the first request), else 408 and close")
		fs.Var(&serveOpts.idle, "idle-timeout",
			"close a connection idle for `D`: http between requests (default "+serve.DefaultHTTPIdleTimeout.String()+
				"), echo and proxy with no data either way (default "+serve.DefaultStreamIdleTimeout.String()+")")
		fs.DurationVar(&lim.BodyTimeout, "body-timeout", serve.DefaultBodyTimeout,
			"http: the whole request body must arrive within `D` of its head")
		fs.DurationVar(&lim.SendTimeout, "send-timeout", serve.DefaultSendTimeout,
			"http: close a connection whose client takes longer than `D` to accept each 256 KiB of a static file")
		fs.Int64Var(&lim.MaxBodyBytes, "max-body", serve.DefaultMaxBodyBytes,
			"http: answer 413 to a request announcing a body over `BYTES`, before reading it")
		fs.IntVar(&lim.MaxHeaderBytes, "max-header-bytes", serve.DefaultMaxHeaderBytes,
			"http: answer 431 to a request head (request line and fields) over `BYTES`")
		fs.IntVar(&lim.MaxHeaders, "max-headers", serve.DefaultMaxHeaders,
			"http: answer 431 to a request with more than `N` header fields")
		fs.BoolVar(&lim.FollowSymlinks, "follow-symlinks", false,
			"http: serve files through symlinks that leave --root (by default such a request is answered 403)")
		fs.DurationVar(&lim.ConnectTimeout, "connect-timeout", serve.DefaultConnectTimeout,
			"proxy: give up on the upstream connection after `D` and close the client")
		fs.StringVar(&serveOpts.profile, "cpuprofile", "", "write a Go CPU profile of the server to `FILE` when it shuts down (for bench echo's analysis)")
		fs.StringVar(&serveOpts.tlsCert, "tls-cert", "", "serve TLS with the certificate chain in `FILE` (PEM; `loopkernel certs` makes a test one)")
		fs.StringVar(&serveOpts.tlsKey, "tls-key", "", "the private key of --tls-cert, in `FILE` (PEM)")
		fs.BoolVar(&serveOpts.upstreamTLS, "upstream-tls", false, "proxy: speak TLS to --upstream, verifying its certificate")
		fs.StringVar(&serveOpts.upstreamCA, "upstream-ca", "", "proxy: trust the CA certificates in `FILE` (PEM) for the upstream instead of the system's; implies --upstream-tls")
		fs.StringVar(&serveOpts.upstreamName, "upstream-name", "", "proxy: the `NAME` the upstream's certificate must carry (default: the --upstream host)")
	},
	run: runServe,
}

func runServe(e *env, args []string) error {
	if len(args) != 1 {
		return usagef("name one server")
	}
	listening := func(addrs []net.Addr) {
		for _, a := range addrs {
			fmt.Fprintf(e.stdout, "LISTENING %s\n", a)
		}
	}
	tlsCfg, upTLS, err := serveTLS()
	if err != nil {
		return err
	}
	switch args[0] {
	case "floor":
		if tlsCfg != nil {
			return usagef("floor is raw system calls: it has no TLS")
		}
		return echobench.ServeFloor(serveOpts.addr, func(a net.Addr) { listening([]net.Addr{a}) })
	case "go-net":
		return echobench.ServeGoNetTLS(serveOpts.addr, tlsCfg, func(a net.Addr) { listening([]net.Addr{a}) })
	}
	p, err := e.policy()
	if err != nil {
		return err
	}
	if serveOpts.profile != "" {
		f, err := os.Create(serveOpts.profile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	// The loops handle SIGINT/SIGTERM themselves; this context only covers
	// the moments before they are running.
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	limits := serveOpts.limits
	limits.IdleTimeout = serve.DefaultLimits(args[0]).IdleTimeout
	if serveOpts.idle.set {
		limits.IdleTimeout = serveOpts.idle.d
	}
	return serve.Run(ctx, serve.Config{
		Kind:      args[0],
		Addr:      serveOpts.addr,
		Upstream:  serveOpts.upstream,
		Root:      serveOpts.root,
		Loops:     serveOpts.loops,
		NewLoop:   p.NewEventLoop,
		Listening: listening,
		Limits:    &limits,

		TLS:         tlsCfg,
		UpstreamTLS: upTLS,
	})
}

// serveTLS loads the TLS flags: the server's certificate, and the proxy's
// upstream trust.
func serveTLS() (server, upstream *tls.Config, err error) {
	if (serveOpts.tlsCert == "") != (serveOpts.tlsKey == "") {
		return nil, nil, usagef("--tls-cert and --tls-key go together")
	}
	if serveOpts.tlsCert != "" {
		pair, err := tls.LoadX509KeyPair(serveOpts.tlsCert, serveOpts.tlsKey)
		if err != nil {
			return nil, nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		server = &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"http/1.1"}}
	}
	if serveOpts.upstreamTLS || serveOpts.upstreamCA != "" || serveOpts.upstreamName != "" {
		upstream = &tls.Config{ServerName: serveOpts.upstreamName}
		if serveOpts.upstreamCA != "" {
			pem, err := os.ReadFile(serveOpts.upstreamCA)
			if err != nil {
				return nil, nil, fmt.Errorf("--upstream-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("--upstream-ca: no PEM certificate in %s", serveOpts.upstreamCA)
			}
			upstream.RootCAs = pool
		}
	}
	return server, upstream, nil
}
