package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/loopkernel/loopkernel/bench"
)

// benchCmd groups the benchmarks that put loopkernel next to its peers on
// the same machine in the same run, which is the only way such a comparison
// means anything on a shared VM: `bench loop` (this file) measures the event
// loop itself against asyncio and uvloop, `bench echo` (cmd_bench_echo.go)
// measures servers.
var benchCmd = &command{
	name:     "bench",
	synopsis: "loop|echo|idle|resolve|executor|spawn [FLAGS]",
	summary:  "benchmark loopkernel against its peers, measured in the same run",
	help: `Benchmarks:
  loop     the loop workloads of package bench (call_soon, timer, task_await,
           task_yield) on loopkernel, in this process with testing.Benchmark,
           and their Python twins (bench/loop_peers.py, built in) on asyncio
           and uvloop; the sides take turns for --rounds rounds (default 5
           here) and the tables show medians of wall-clock and CPU ns per
           operation, with each peer's ratio to loopkernel (above 1:
           loopkernel is faster). The loop is built from --policy.
           Flags: --rounds, --benchtime, --python, --workloads, --json, --quiet.
  echo     loopkernel's echo server on each --policies entry against the floor
           (raw epoll), Go net, asyncio and uvloop: req/s, p50/p99 latency,
           server CPU-µs per request (child processes included) and server
           sleeps per request, servers interleaved in one run. The client is
           --client epoll (default: one OS thread, raw non-blocking sockets,
           level-triggered epoll, as a C load generator) or go (net, a
           goroutine per connection); --pin (default on) puts servers and
           client on different CPUs. Flags: loopkernel bench echo -h
  idle     resident memory (VmRSS, child processes included) of each server
           above holding --conns idle connections (default 10000, one number
           here) that have each echoed one message: before, with them, KiB
           per connection, ratios to the floor and uvloop; servers one at a
           time. Flags: --conns, --policies, --peers, --settle, --python,
           --json.
  executor the process pool (--executor process) against Python's
           ProcessPoolExecutor with run_in_executor, taking turns: call round
           trip, calls/s with 1 and 2 workers, CPU-bound scaling, a 100 MiB
           argument. Flags: --rounds (3), --benchtime, --python, --json.
  spawn    subprocesses against asyncio and uvloop, sides taking turns for
           --rounds rounds (default 3 here): children started and reaped per
           second (/bin/true, --concurrency at a time, --children per round)
           and --bytes (default 1 GiB) through cat's stdin and stdout, with
           CPU per child and per 100 MB. Flags: --children, --concurrency,
           --bytes, --rounds, --python, --json.`,
	flags: func(fs *flag.FlagSet) {
		echoFlags(fs)
		benchLoopFlags(fs)
		idleFlags(fs)  // cmd_bench_idle.go
		spawnFlags(fs) // cmd_bench_spawn.go
	},
	run: runBench,
}

// benchSuites maps `loopkernel bench SUITE` to the code that runs it.
var benchSuites = map[string]func(e *env, args []string) error{
	"loop":     runBenchLoop,
	"echo":     benchEcho,     // cmd_bench_echo.go
	"idle":     benchIdle,     // cmd_bench_idle.go
	"resolve":  benchResolve,  // cmd_bench_resolve.go
	"executor": benchExecutor, // cmd_bench_executor.go
	"spawn":    benchSpawn,    // cmd_bench_spawn.go
}

func runBench(e *env, args []string) error {
	names := make([]string, 0, len(benchSuites))
	for n := range benchSuites {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(args) == 0 {
		return usagef("name a benchmark: %s", strings.Join(names, ", "))
	}
	suite, ok := benchSuites[args[0]]
	if !ok {
		return usagef("unknown benchmark %q (known: %s)", args[0], strings.Join(names, ", "))
	}
	return suite(e, args[1:])
}

// benchFlags is the bench command's flag set, kept so that bench loop can
// read the flags it shares with bench echo (--rounds, --python, --json)
// whichever file defined them, and tell a default from a value given.
var benchFlags *flag.FlagSet

const benchLoopRounds = 5

func benchLoopFlags(fs *flag.FlagSet) {
	benchFlags = fs
	define := func(name string, def func()) {
		if fs.Lookup(name) == nil {
			def()
		}
	}
	define("rounds", func() { fs.Int("rounds", benchLoopRounds, "interleaved rounds; the tables show medians") })
	define("python", func() {
		fs.String("python", bench.DefaultPython, "Python interpreter `PATH` for the asyncio and uvloop side")
	})
	define("json", func() { fs.String("json", "", "also write the report as JSON to `FILE`") })
	fs.Duration("benchtime", 500*time.Millisecond, "loop: run length of each workload per round, on each side")
	fs.String("workloads", "", "loop: comma-separated workload `NAMES` (default all)")
	fs.Bool("quiet", false, "loop: no progress lines on stderr")
}

// benchFlag returns the value of the bench command's flag name, or def
// if the flag was not given.
func benchFlag[T any](name string, def T) T {
	given := false
	benchFlags.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	if !given {
		return def
	}
	return benchFlags.Lookup(name).Value.(flag.Getter).Get().(T)
}

// runBenchLoop is `loopkernel bench loop`.
func runBenchLoop(e *env, args []string) error {
	if len(args) > 0 {
		return usagef("bench loop: unexpected arguments %q", args)
	}
	rounds := benchFlag("rounds", benchLoopRounds)
	benchtime := benchFlag("benchtime", 500*time.Millisecond)
	if rounds < 1 || benchtime <= 0 {
		return usagef("--rounds and --benchtime must be positive")
	}
	p, err := e.policy()
	if err != nil {
		return err
	}
	opts := bench.CompareOptions{
		Rounds:    rounds,
		BenchTime: benchtime,
		Python:    benchFlag("python", bench.DefaultPython),
		NewLoop:   p.NewEventLoop,
		Label:     "loopkernel",
	}
	if p.Name != "" {
		opts.Label = "loopkernel(" + p.Name + ")"
	}
	if w := benchFlag("workloads", ""); w != "" {
		opts.Workloads = strings.Split(w, ",")
	}
	if !benchFlag("quiet", false) {
		opts.Progress = e.stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Compare(ctx, opts)
	if err != nil {
		return err
	}
	if err := rep.WriteTable(e.stdout); err != nil {
		return err
	}
	if path := benchFlag("json", ""); path != "" {
		if err := writeBenchJSON(path, rep); err != nil {
			return err
		}
	}
	return nil
}

func writeBenchJSON(path string, rep *bench.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		f.Close()
		return fmt.Errorf("write report %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
