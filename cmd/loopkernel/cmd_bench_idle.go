package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/loopkernel/loopkernel/internal/echobench"
)

// idleDefaultConns is issue 4's memory target size: 10 k idle connections.
const idleDefaultConns = echobench.IdleTargetConns

var idleOpts struct {
	settle time.Duration
}

// idleFlags adds the flags only bench idle has. It shares --policies,
// --peers, --python and --json with bench echo (echoFlags), and --conns,
// which here is one number and defaults to 10000.
func idleFlags(fs *flag.FlagSet) {
	fs.DurationVar(&idleOpts.settle, "settle", 2*time.Second, "idle: how long the connections idle before the server's memory is read")
}

// benchIdle is `loopkernel bench idle`: the resident memory each server
// needs to hold --conns idle connections, each of which has echoed once.
func benchIdle(e *env, args []string) error {
	if len(args) > 0 {
		return usagef("bench idle takes no arguments, only flags")
	}
	conns := idleDefaultConns
	if s := benchFlag("conns", ""); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return usagef("--conns: bench idle takes one positive number, got %q", s)
		}
		conns = n
	}
	if idleOpts.settle <= 0 {
		return usagef("--settle must be positive")
	}
	bt, err := newBenchTLS(e)
	if err != nil {
		return err
	}
	defer bt.remove()
	servers, err := benchServers(e, echoOpts.policies, echoOpts.peers, echoOpts.python, bt)
	if err != nil {
		return err
	}
	cfg := echobench.IdleConfig{Conns: conns, Settle: idleOpts.settle, Progress: e.stderr, Servers: servers}
	if bt != nil {
		cfg.TLS = bt.client
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	fmt.Fprintf(e.stderr, "bench idle: %d servers, one at a time, %d idle connections each, %v settle\n",
		len(cfg.Servers), cfg.Conns, cfg.Settle)
	rows, err := echobench.RunIdle(ctx, cfg)
	if err != nil {
		return err
	}
	echobench.WriteIdleTable(e.stdout, rows)
	if err := writeJSONFile(echoOpts.json, func(w io.Writer) error { return echobench.WriteIdleJSON(w, rows) }); err != nil {
		return err
	}
	for _, r := range rows {
		if r.Error != "" {
			return fmt.Errorf("%s with %d idle connections: %s", r.Server, r.Conns, r.Error)
		}
	}
	return nil
}
