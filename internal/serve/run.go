package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/loopkernel/loopkernel/kernel"
)

// Kinds lists the servers Run knows.
var Kinds = []string{"echo", "http", "proxy"}

// Config says what to serve and how.
type Config struct {
	Kind string // echo, http or proxy
	// Addr is host:port, or unix:PATH (unix:@NAME for an abstract name).
	Addr string
	// Upstream is the proxy's target: host:port or unix:PATH.
	Upstream string
	// Root is the HTTP server's static directory; empty serves no files.
	Root string
	// Loops runs that many loops, one goroutine each, on one TCP port with
	// SO_REUSEPORT so the kernel spreads connections across them.
	Loops int
	// NewLoop makes each loop (from the chosen policy).
	NewLoop func() (*kernel.Loop, error)
	// Listening is called once with the bound addresses when every loop
	// accepts connections.
	Listening func(addrs []net.Addr)
	// ShutdownGrace is how long connections get to finish after a shutdown
	// signal before they are aborted; 0 means 5 s.
	ShutdownGrace time.Duration
	// Limits bounds each connection; nil means DefaultLimits(Kind).
	Limits *Limits
	// TLS, when set, serves TLS with it (a certificate inside); UpstreamTLS
	// makes the proxy speak TLS to its upstream.
	TLS, UpstreamTLS *tls.Config
}

// Run serves until ctx is done or the process gets SIGINT or SIGTERM, then
// shuts down gracefully: stop accepting, close every connection after its
// buffered data is written, abort what is left after the grace period.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Loops < 1 {
		cfg.Loops = 1
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 5 * time.Second
	}
	unixPath, isUnix := strings.CutPrefix(cfg.Addr, "unix:")
	if isUnix && cfg.Loops > 1 {
		return errors.New("serve: --loops > 1 needs a TCP address (SO_REUSEPORT does not spread Unix connections)")
	}
	if cfg.Kind == "proxy" && cfg.Upstream == "" {
		return errors.New("serve proxy: an upstream address is required")
	}
	if !validKind(cfg.Kind) {
		return fmt.Errorf("serve: unknown server %q (known: %s)", cfg.Kind, strings.Join(Kinds, ", "))
	}
	if cfg.Limits == nil {
		l := DefaultLimits(cfg.Kind)
		cfg.Limits = &l
	}
	if err := cfg.Limits.validate(); err != nil {
		return err
	}
	// The root is opened once, before any loop, and shared: a --root that
	// is missing fails the command at start, not the first request.
	var root *staticRoot
	if cfg.Kind == "http" && cfg.Root != "" {
		var err error
		if root, err = openStaticRoot(cfg.Root, cfg.Limits.FollowSymlinks); err != nil {
			return fmt.Errorf("serve http: %w", err)
		}
		defer root.Close()
	}

	// Each loop gets a stop function that other goroutines may call.
	type member struct {
		loop *kernel.Loop
		stop func()
	}
	var (
		mu      sync.Mutex
		members []member
		addrs   []net.Addr
		errs    = make([]error, cfg.Loops)
		wg      sync.WaitGroup
	)
	stopAll := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range members {
			m.stop()
		}
	}
	host, port := "", ""
	if !isUnix {
		host, port = splitHostPort(cfg.Addr)
	}

	for i := 0; i < cfg.Loops; i++ {
		bound := make(chan error, 1)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = serveLoop(cfg, root, i, host, port, unixPath, isUnix, func(l *kernel.Loop, stop func(), a []net.Addr) {
				mu.Lock()
				members = append(members, member{l, stop})
				if i == 0 {
					addrs = a
					// Later loops share the port the first one got.
					if !isUnix && len(a) > 0 {
						if ta, ok := a[0].(*net.TCPAddr); ok {
							port = strconv.Itoa(ta.Port)
						}
					}
				}
				mu.Unlock()
			}, bound, stopAll)
		}(i)
		if err := <-bound; err != nil {
			stopAll()
			wg.Wait()
			return err
		}
	}
	if cfg.Listening != nil {
		cfg.Listening(addrs)
	}
	go func() {
		<-ctx.Done()
		stopAll()
	}()
	wg.Wait()
	return errors.Join(errs...)
}

func validKind(k string) bool {
	for _, x := range Kinds {
		if x == k {
			return true
		}
	}
	return false
}

// serveLoop runs one loop: bind, report, serve until stopped, shut down.
func serveLoop(cfg Config, root *staticRoot, i int, host, port, unixPath string, isUnix bool,
	joined func(*kernel.Loop, func(), []net.Addr), bound chan<- error, stopAll func()) error {
	loop, err := cfg.NewLoop()
	if err != nil {
		bound <- fmt.Errorf("serve: loop %d: %w", i, err)
		return nil
	}
	defer loop.Close()
	stopped := kernel.CreateFuture[struct{}](loop)
	stop := func() {
		loop.CallSoonThreadsafe(func() {
			if !stopped.Done() {
				stopped.SetResult(struct{}{})
			}
		})
	}
	if i == 0 {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
			if err := loop.AddSignalHandler(sig, stopAll); err != nil {
				bound <- fmt.Errorf("serve: %w", err)
				return nil
			}
		}
	}
	reported := false
	sw := newSweep(loop, *cfg.Limits)
	defer sw.stop()
	main, err := kernel.CreateTask(loop, func(co *kernel.Co) (struct{}, error) {
		factory := protocolFactory(cfg, loop, root, sw)
		opts := &kernel.ServerOptions{ReusePort: cfg.Loops > 1, Backlog: 1024, SSL: cfg.TLS}
		var srv *kernel.Server
		var err error
		if isUnix {
			srv, err = kernel.CreateUnixServer(co, factory, unixPath, opts)
		} else {
			srv, err = kernel.CreateServer(co, factory, []string{host}, port, opts)
		}
		if err != nil {
			return struct{}{}, fmt.Errorf("serve %s on %s: %w", cfg.Kind, cfg.Addr, err)
		}
		defer srv.Close()
		var addrs []net.Addr
		for _, s := range srv.Sockets() {
			addrs = append(addrs, s.LocalAddr())
		}
		joined(loop, stop, addrs)
		reported = true
		bound <- nil
		if _, err := stopped.Await(co); err != nil {
			return struct{}{}, err
		}
		// Graceful shutdown: no new connections; ask every connection to
		// finish; abort the stragglers after the grace period.
		srv.Close()
		srv.CloseClients()
		grace, _ := loop.CallLater(cfg.ShutdownGrace, srv.AbortClients)
		err = srv.WaitClosed(co)
		grace.Cancel()
		return struct{}{}, err
	})
	if err != nil {
		bound <- fmt.Errorf("serve: %w", err)
		return nil
	}
	err = loop.RunUntilComplete(main)
	if !reported {
		bound <- err
		return nil
	}
	return err
}

// protocolFactory makes the connections of one loop, which share its sweep.
func protocolFactory(cfg Config, loop *kernel.Loop, root *staticRoot, sw *sweep) func() kernel.BaseProtocol {
	lim := cfg.Limits
	switch cfg.Kind {
	case "http":
		s := &httpServer{loop: loop, root: root, lim: lim, sw: sw,
			head: headLimits{maxBytes: lim.MaxHeaderBytes, maxFields: lim.MaxHeaders}}
		return func() kernel.BaseProtocol { return &httpConn{s: s} }
	case "proxy":
		return func() kernel.BaseProtocol {
			return &proxyConn{loop: loop, upstream: cfg.Upstream, lim: lim, sw: sw, upTLS: cfg.UpstreamTLS}
		}
	default:
		return func() kernel.BaseProtocol { return &echoConn{lim: lim, sw: sw} }
	}
}

// splitHostPort splits host:port, accepting a bare ":port" and "[v6]:port".
func splitHostPort(addr string) (string, string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, ""
	}
	return host, port
}
