package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/loopkernel/loopkernel/internal/echobench"
	"github.com/loopkernel/loopkernel/policy"
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
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg := echobench.IdleConfig{Conns: conns, Settle: idleOpts.settle, Progress: e.stderr}
	for _, p := range splitList(echoOpts.policies) {
		if _, err := policy.Lookup(p); err != nil {
			return err
		}
		cfg.Servers = append(cfg.Servers, echobench.ServerSpec{
			Name: "loopkernel/" + p,
			Argv: []string{self, "serve", "echo", "--policy", p, "--addr", "127.0.0.1:0"},
		})
	}
	want := map[string]bool{}
	for _, p := range splitList(echoOpts.peers) {
		want[p] = true
	}
	for _, ref := range []string{"floor", "go-net"} {
		if want[ref] {
			cfg.Servers = append(cfg.Servers, echobench.ServerSpec{Name: ref, Argv: []string{self, "serve", ref, "--addr", "127.0.0.1:0"}})
		}
	}
	if want["asyncio"] || want["uvloop"] {
		specs, missing, err := echobench.PythonPeers(echoOpts.python)
		if err != nil {
			return err
		}
		for _, s := range specs {
			if want[s.Name] {
				cfg.Servers = append(cfg.Servers, s)
			}
		}
		for _, m := range missing {
			fmt.Fprintf(e.stderr, "skipped: %s\n", m)
		}
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
	if echoOpts.json != "" {
		f, err := os.Create(echoOpts.json)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := echobench.WriteIdleJSON(f, rows); err != nil {
			return err
		}
	}
	for _, r := range rows {
		if r.Error != "" {
			return fmt.Errorf("%s with %d idle connections: %s", r.Server, r.Conns, r.Error)
		}
	}
	return nil
}
