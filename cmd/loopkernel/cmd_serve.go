package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/loopkernel/loopkernel/internal/echobench"
	"github.com/loopkernel/loopkernel/internal/serve"
)

var serveOpts struct {
	addr     string
	upstream string
	root     string
	loops    int
	profile  string
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
stragglers aborted after 5 s.`,
	flags: func(fs *flag.FlagSet) {
		fs.StringVar(&serveOpts.addr, "addr", "127.0.0.1:8000", "listen `ADDR`: host:port or unix:PATH")
		fs.StringVar(&serveOpts.upstream, "upstream", "", "proxy: forward to `ADDR` (host:port or unix:PATH)")
		fs.StringVar(&serveOpts.root, "root", "", "http: serve files below `DIR` at /static/")
		fs.IntVar(&serveOpts.loops, "loops", 1, "run `N` loops (one per core) sharing the port with SO_REUSEPORT")
		fs.StringVar(&serveOpts.profile, "cpuprofile", "", "write a Go CPU profile of the server to `FILE` when it shuts down (for bench echo's analysis)")
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
	switch args[0] {
	case "floor":
		return echobench.ServeFloor(serveOpts.addr, func(a net.Addr) { listening([]net.Addr{a}) })
	case "go-net":
		return echobench.ServeGoNet(serveOpts.addr, func(a net.Addr) { listening([]net.Addr{a}) })
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
	return serve.Run(ctx, serve.Config{
		Kind:      args[0],
		Addr:      serveOpts.addr,
		Upstream:  serveOpts.upstream,
		Root:      serveOpts.root,
		Loops:     serveOpts.loops,
		NewLoop:   p.NewEventLoop,
		Listening: listening,
	})
}
