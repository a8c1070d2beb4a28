package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/loopkernel/loopkernel/internal/echobench"
	"github.com/loopkernel/loopkernel/policy"
)

// echoOpts are the flags of `loopkernel bench echo`.
var echoOpts struct {
	policies, peers, sizes, conns, python, json string
	client, probe, wrap                         string
	pipeline, rounds                            int
	duration, warmup                            time.Duration
	pin, tls                                    bool
}

func echoFlags(fs *flag.FlagSet) {
	fs.StringVar(&echoOpts.policies, "policies", "epoll,poll,epoll-plugin", "echo: loopkernel policies to measure, comma-separated")
	fs.StringVar(&echoOpts.peers, "peers", "floor,go-net,asyncio,uvloop", "echo: reference servers, comma-separated (those not installed are skipped with the reason)")
	fs.StringVar(&echoOpts.sizes, "sizes", "64,1024,16384,102400", "echo: message sizes in bytes, comma-separated")
	fs.StringVar(&echoOpts.conns, "conns", "1,10,100", "echo: connection counts, comma-separated")
	fs.IntVar(&echoOpts.pipeline, "pipeline", 1, "echo: messages in flight per connection")
	fs.DurationVar(&echoOpts.duration, "duration", 2*time.Second, "echo: measured time per server and cell")
	fs.DurationVar(&echoOpts.warmup, "warmup", 500*time.Millisecond, "echo: warm-up before each measurement")
	fs.IntVar(&echoOpts.rounds, "rounds", 1, "rounds per cell; servers are interleaved and the table shows medians")
	fs.StringVar(&echoOpts.python, "python", "/usr/bin/python3", "echo: the Python for the asyncio and uvloop peers")
	fs.StringVar(&echoOpts.json, "json", "", "also write the raw rows to `FILE`")
	fs.StringVar(&echoOpts.client, "client", string(echobench.EngineEpoll),
		"echo: load generator `ENGINES`, comma-separated, each measuring every server in the same rounds: epoll (one OS thread, raw sockets, as a C client) or go (net, a goroutine per connection)")
	fs.BoolVar(&echoOpts.pin, "pin", true, "echo: pin each server (child processes included) and the client to different CPUs, when there are two")
	fs.StringVar(&echoOpts.wrap, "wrap", "",
		"echo: start every server under `COMMAND` (split at spaces), e.g. valgrind --tool=callgrind, to count its instructions per request with --probe")
	fs.BoolVar(&echoOpts.tls, "tls", false,
		"echo, idle: every server serves TLS with a throwaway certificate and the client speaks TLS (the go client; floor has no TLS and is skipped)")
	fs.StringVar(&echoOpts.probe, "probe", "",
		"echo: shell `COMMAND` run during each measured window, {pid} {name} {client} {size} {conns} replaced, stopped with SIGINT (e.g. perf stat -p {pid})")
}

// benchEcho is `loopkernel bench echo`: loopkernel's echo server on each
// chosen policy against the reference servers, interleaved in one run.
func benchEcho(e *env, args []string) error {
	if len(args) > 0 {
		return usagef("bench echo takes no arguments, only flags")
	}
	policies, peers, sizes, conns := &echoOpts.policies, &echoOpts.peers, &echoOpts.sizes, &echoOpts.conns
	pipeline, duration, warmup, rounds := &echoOpts.pipeline, &echoOpts.duration, &echoOpts.warmup, &echoOpts.rounds
	python, jsonOut := &echoOpts.python, &echoOpts.json
	cfg := echobench.Config{Pipeline: *pipeline, Warmup: *warmup, Duration: *duration, Rounds: *rounds,
		Pin: echoOpts.pin, Probe: echoOpts.probe, Progress: e.stderr}
	for _, name := range splitList(echoOpts.client) {
		engine, err := echobench.ParseEngine(name)
		if err != nil {
			return usagef("--client: %v", err)
		}
		cfg.Engines = append(cfg.Engines, engine)
	}
	if len(cfg.Engines) == 0 {
		return usagef("--client: name an engine: epoll or go")
	}
	var err error
	if cfg.Sizes, err = intList(*sizes); err != nil {
		return usagef("--sizes: %v", err)
	}
	if cfg.Conns, err = intList(*conns); err != nil {
		return usagef("--conns: %v", err)
	}
	bt, err := newBenchTLS(e)
	if err != nil {
		return err
	}
	defer bt.remove()
	if bt != nil {
		cfg.TLS = bt.client
		if slices.Contains(cfg.Engines, echobench.EngineEpoll) {
			fmt.Fprintln(e.stderr, "bench echo --tls: the epoll client speaks no TLS; the go client measures instead")
			cfg.Engines = []echobench.Engine{echobench.EngineGo}
		}
	}
	if cfg.Servers, err = benchServers(e, *policies, *peers, *python, bt); err != nil {
		return err
	}
	if wrap := strings.Fields(echoOpts.wrap); len(wrap) > 0 {
		for i := range cfg.Servers {
			cfg.Servers[i].Argv = append(slices.Clip(wrap), cfg.Servers[i].Argv...)
			cfg.Servers[i].StartTimeout = 2 * time.Minute // valgrind starts slowly
		}
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	fmt.Fprintf(e.stderr, "bench echo: %d servers × %d clients × %d sizes × %d connection counts × %d rounds, %v each\n",
		len(cfg.Servers), len(cfg.Engines), len(cfg.Sizes), len(cfg.Conns), cfg.Rounds, cfg.Warmup+cfg.Duration)
	rows, err := echobench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	echobench.WriteTable(e.stdout, rows)
	if err := writeJSONFile(*jsonOut, func(w io.Writer) error { return echobench.WriteJSON(w, rows) }); err != nil {
		return err
	}
	for _, r := range rows {
		if r.Error != "" {
			return fmt.Errorf("%s at %d B × %d conns: %s", r.Server, r.Size, r.Conns, r.Error)
		}
	}
	return nil
}

// benchServers is the server list of bench echo and bench idle, in the
// order they are measured: loopkernel's echo server on each policy, then
// the wanted reference peers. floor and go-net are this binary's own
// servers; asyncio and uvloop run under python, and one that is not
// installed is skipped with the reason on stderr rather than failing the
// whole comparison.
func benchServers(e *env, policies, peers, python string, bt *benchTLS) ([]echobench.ServerSpec, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var servers []echobench.ServerSpec
	for _, p := range splitList(policies) {
		if _, err := policy.Lookup(p); err != nil {
			return nil, err
		}
		servers = append(servers, echobench.ServerSpec{
			Name: "loopkernel/" + p,
			Argv: append([]string{self, "serve", "echo", "--policy", p, "--addr", "127.0.0.1:0"}, bt.serveArgs()...),
		})
	}
	want := map[string]bool{}
	for _, p := range splitList(peers) {
		want[p] = true
	}
	for _, ref := range []string{"floor", "go-net"} {
		if !want[ref] {
			continue
		}
		if ref == "floor" && bt != nil {
			fmt.Fprintln(e.stderr, "skipped: floor: raw system calls, no TLS")
			continue
		}
		servers = append(servers, echobench.ServerSpec{Name: ref, Argv: append([]string{self, "serve", ref, "--addr", "127.0.0.1:0"}, bt.serveArgs()...)})
	}
	if want["asyncio"] || want["uvloop"] {
		specs, missing, err := echobench.PythonPeers(python, bt.pythonArgs()...)
		if err != nil {
			return nil, err
		}
		for _, s := range specs {
			if want[s.Name] {
				servers = append(servers, s)
			}
		}
		for _, m := range missing {
			fmt.Fprintf(e.stderr, "skipped: %s\n", m)
		}
	}
	return servers, nil
}

// writeJSONFile writes the raw rows to path with write, when --json named
// a file.
func writeJSONFile(path string, write func(io.Writer) error) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return write(f)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
