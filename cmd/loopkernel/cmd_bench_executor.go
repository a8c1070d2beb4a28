package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/executor"
	"github.com/loopkernel/loopkernel/policy"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// `loopkernel bench executor`: the process pool (plugins/executor, the
// "process" executor) against Python's ProcessPoolExecutor driven by
// asyncio's run_in_executor, the two sides taking turns for --rounds rounds
// in one run, medians reported:
//
//   - round trip: one call at a time of a trivial function (an int doubled),
//     one worker, awaited by a coroutine on a running loop on both sides
//     (kernel.CallFunc against run_in_executor); the target is
//     loopkernel ≤ 1/10 of Python's. The same call made with Pool.Call
//     from a plain goroutine, without a loop, is reported beside it;
//   - calls per second with 64 calls in flight from as many tasks on one
//     loop (coroutines on Python's side), trivial function, 1 and 2 workers
//     (what the dispatch costs), and for loopkernel alone from 64
//     goroutines calling Pool.Call;
//   - calls per second of a CPU-bound function (~1 ms of work, calibrated
//     on each side in its own language), 1 and 2 workers, from the loop:
//     the scaling;
//   - a 100 MiB bytes argument echoed back: loopkernel through shared
//     memory, and 32 MiB through the plain call-plane socket (64 MiB is its
//     limit) for the comparison; Python pickles through its pipe.

// The functions the bench calls; registered in every process of this
// program, so the pool's workers (this binary re-executed) have them.
var (
	benchDouble = sdk.NewFunc("bench.executor.double", func(_ context.Context, x int) (int, error) { return 2 * x, nil })
	benchSpin   = sdk.NewFunc("bench.executor.spin", func(_ context.Context, n int) (uint64, error) { return spin(n), nil })
)

func init() {
	sdk.RegisterFunc("bench.executor.echo", func(_ context.Context, b []byte) ([]byte, error) { return b, nil })
}

// spinSink keeps spin's result where the compiler must compute it.
var spinSink uint64

// spin is CPU work that the compiler cannot drop, as long as its result is
// used (spinSink).
func spin(n int) uint64 {
	x := uint64(n)
	for range n {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

// execSide is one side's measurements in one round. Every figure has a
// wall-clock form and a CPU form: CPU time of the host and its workers
// together (getrusage of the process and, once the pool has closed and its
// workers are reaped, of its children), less what starting and stopping an
// idle pool of that size costs. On a loaded machine wall time mostly
// measures the run queue; CPU per call is what the work costs.
type execSide struct {
	RoundTripNs    float64            `json:"round_trip_ns"`
	RoundTripCPUNs float64            `json:"round_trip_cpu_ns"`
	RoundTripWakes float64            `json:"round_trip_sleeps"` // voluntary context switches per call
	Throughput     map[string]float64 `json:"calls_per_s"`       // by workers
	ThroughputCPU  map[string]float64 `json:"cpu_ns_per_call"`   // by workers
	CPUBound       map[string]float64 `json:"cpu_bound_calls_per_s"`
	BigMs          float64            `json:"big_ms"` // 100 MiB echo
	BigCPUMs       float64            `json:"big_cpu_ms"`
	ShmMidMs       float64            `json:"shm_mid_ms"` // 32 MiB echo through shared memory (loopkernel only)
	ShmMidCPUMs    float64            `json:"shm_mid_cpu_ms"`
	PlainMidMs     float64            `json:"plain_mid_ms"` // 32 MiB echo through the call-plane socket (loopkernel only)
	PlainMidCPUMs  float64            `json:"plain_mid_cpu_ms"`
	PluginRTNs     float64            `json:"plugin_round_trip_ns"` // plugin:goroutine (loopkernel only)
	// The round trip of Pool.Call from a goroutine, no loop (loopkernel only).
	DirectRTNs    float64 `json:"direct_round_trip_ns"`
	DirectRTCPUNs float64 `json:"direct_round_trip_cpu_ns"`
	DirectRTWakes float64 `json:"direct_round_trip_sleeps"`
	// Calls per second from 64 goroutines calling Pool.Call, no loop
	// (loopkernel only), by workers.
	DirectThroughput map[string]float64 `json:"direct_calls_per_s"`
}

const (
	benchBigBytes = 100 << 20
	benchMidBytes = 32 << 20
	benchInFlight = 64
)

func benchExecutor(e *env, args []string) error {
	if len(args) > 0 {
		return usagef("bench executor takes no arguments, only flags")
	}
	rounds := benchFlag("rounds", 3)
	benchtime := benchFlag("benchtime", 500*time.Millisecond)
	python := benchFlag("python", "/usr/bin/python3")
	if rounds <= 0 || benchtime <= 0 {
		return usagef("--rounds and --benchtime must be positive")
	}
	script, err := writePeerScript()
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(script))
	fmt.Fprintf(e.stderr, "bench executor: %d rounds, %v per measurement, python %s\n", rounds, benchtime, python)

	iters := calibrateSpin(time.Millisecond)
	var lk, py []execSide
	for r := range rounds {
		fmt.Fprintf(e.stderr, "round %d/%d: loopkernel\n", r+1, rounds)
		s, err := measureLoopkernel(benchtime, iters)
		if err != nil {
			return fmt.Errorf("loopkernel side: %w", err)
		}
		lk = append(lk, s)
		fmt.Fprintf(e.stderr, "round %d/%d: python\n", r+1, rounds)
		p, err := measurePython(python, script, benchtime)
		if err != nil {
			fmt.Fprintf(e.stderr, "python side: %v (reported as missing)\n", err)
		} else {
			py = append(py, p)
		}
	}
	writeExecutorTable(e.stdout, lk, py)
	return writeJSONFile(benchFlag("json", ""), func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string][]execSide{"loopkernel": lk, "python": py})
	})
}

// calibrateSpin finds the spin count that takes d of CPU in this process.
// It reads the thread's CPU clock, not the wall clock: on a loaded machine
// a wall-clock calibration counts the time the thread waited for a CPU.
func calibrateSpin(d time.Duration) int {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := func() time.Duration {
		var ts unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
		return time.Duration(ts.Nano())
	}
	n := 1 << 16
	for {
		t0 := cpu()
		spinSink = spin(n) // kept, or the compiler drops the work and the loop costs an eighth
		if el := cpu() - t0; el >= 20*time.Millisecond {
			return max(1, int(float64(n)*float64(d)/float64(el)))
		}
		n *= 2
	}
}

// usage is CPU time and sleeps (voluntary context switches: a thread that
// waited and had to be woken, which load does not change) of this process
// and its reaped children.
type usage struct {
	cpu    time.Duration
	sleeps int64
}

func usageNow() usage {
	var self, kids unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &self)
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &kids)
	tv := func(t unix.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return usage{tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime), self.Nvcsw + kids.Nvcsw}
}

func (u usage) minus(v usage) usage { return usage{u.cpu - v.cpu, u.sleeps - v.sleeps} }

// onPool starts a pool, runs body on it, closes it, and returns the usage
// of the whole (workers included, once reaped).
func onPool(workers, threshold int, body func(*executor.Pool) error) (usage, error) {
	u0 := usageNow()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := executor.NewPool(ctx, executor.PoolOptions{Workers: workers, ShmThreshold: threshold})
	if err != nil {
		return usage{}, err
	}
	err = body(p)
	p.Close()
	return usageNow().minus(u0), err
}

func measureLoopkernel(benchtime time.Duration, iters int) (execSide, error) {
	ctx := context.Background()
	s := execSide{Throughput: map[string]float64{}, ThroughputCPU: map[string]float64{}, CPUBound: map[string]float64{}, DirectThroughput: map[string]float64{}}
	idle := map[int]usage{}
	for _, w := range []int{1, 2} {
		c, err := onPool(w, 0, func(p *executor.Pool) error { _, err := benchDouble.Call(ctx, p, 1); return err })
		if err != nil {
			return s, err
		}
		idle[w] = c
	}
	perCall := func(u usage, w, n int) float64 { return float64((u.cpu - idle[w].cpu).Nanoseconds()) / float64(n) }

	var n int
	c, err := onPool(1, 0, func(p *executor.Pool) (err error) {
		s.RoundTripNs, n, err = loopRoundTrip(p, benchtime)
		return err
	})
	if err != nil {
		return s, err
	}
	s.RoundTripCPUNs = perCall(c, 1, n)
	s.RoundTripWakes = float64(c.sleeps-idle[1].sleeps) / float64(n)
	c, err = onPool(1, 0, func(p *executor.Pool) (err error) {
		s.DirectRTNs, n, err = roundTrip(ctx, p, benchtime)
		return err
	})
	if err != nil {
		return s, err
	}
	s.DirectRTCPUNs = perCall(c, 1, n)
	s.DirectRTWakes = float64(c.sleeps-idle[1].sleeps) / float64(n)
	for _, w := range []int{1, 2} {
		key := strconv.Itoa(w)
		c, err := onPool(w, 0, func(p *executor.Pool) (err error) {
			s.Throughput[key], n, err = loopCallsPerSecond(p, benchtime, benchDouble, 1)
			return err
		})
		if err != nil {
			return s, err
		}
		s.ThroughputCPU[key] = perCall(c, w, n)
		if _, err := onPool(w, 0, func(p *executor.Pool) (err error) {
			s.DirectThroughput[key], _, err = callsPerSecond(benchtime, func() error {
				_, err := benchDouble.Call(ctx, p, 1)
				return err
			})
			return err
		}); err != nil {
			return s, err
		}
		if _, err := onPool(w, 0, func(p *executor.Pool) (err error) {
			s.CPUBound[key], _, err = loopCallsPerSecond(p, benchtime, benchSpin, iters)
			return err
		}); err != nil {
			return s, err
		}
	}
	big := make([]byte, benchBigBytes)
	for i := 0; i < len(big); i += 4096 {
		big[i] = byte(i >> 12) // touched, so no side reads the zero page
	}
	for _, m := range []struct {
		threshold int
		arg       []byte
		ms, cpu   *float64
	}{
		{0, big, &s.BigMs, &s.BigCPUMs},
		{0, big[:benchMidBytes], &s.ShmMidMs, &s.ShmMidCPUMs},
		{-1, big[:benchMidBytes], &s.PlainMidMs, &s.PlainMidCPUMs},
	} {
		c, err := onPool(1, m.threshold, func(p *executor.Pool) (err error) {
			*m.ms, err = echoRoundTrip(ctx, p, m.arg)
			return err
		})
		if err != nil {
			return s, err
		}
		*m.cpu = float64((c.cpu - idle[1].cpu).Microseconds()) / 1000 / echoRepeats
	}
	// One supervised worker with many calls in flight (plugin:goroutine):
	// what the pool's envelope and dispatch add to the call plane.
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rx, err := plugin.Open(octx, sdk.Executors, "plugin:"+sdk.DefaultExecutor, plugin.Options{})
	if err != nil {
		return s, err
	}
	defer rx.Close()
	s.PluginRTNs, _, err = roundTrip(ctx, rx, benchtime)
	return s, err
}

// roundTrip makes one call at a time for d and returns the wall time per
// call and the number of calls (warm-up included, for CPU per call).
func roundTrip(ctx context.Context, ex sdk.Executor, d time.Duration) (float64, int, error) {
	const warm = 200
	for i := range warm {
		if _, err := benchDouble.Call(ctx, ex, i); err != nil {
			return 0, 0, err
		}
	}
	n, t0 := 0, time.Now()
	for time.Since(t0) < d {
		for range 100 {
			if _, err := benchDouble.Call(ctx, ex, n); err != nil {
				return 0, 0, err
			}
			n++
		}
	}
	return float64(time.Since(t0).Nanoseconds()) / float64(n), n + warm, nil
}

// loopRoundTrip is roundTrip from a coroutine on a running loop whose
// function executor is ex (kernel.CallFunc, as Python's side awaits
// run_in_executor).
func loopRoundTrip(ex sdk.Executor, d time.Duration) (float64, int, error) {
	pol := &policy.Policy{Name: "bench-executor", Selector: "epoll"}
	l, err := pol.NewEventLoop()
	if err != nil {
		return 0, 0, err
	}
	defer l.Close()
	l.SetFuncExecutor(ex)
	const warm = 200
	var ns float64
	var n int
	task, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
		call := func(i int) error {
			f, err := kernel.CallFunc(l, benchDouble, i)
			if err != nil {
				return err
			}
			_, err = f.Await(co)
			return err
		}
		for i := range warm {
			if err := call(i); err != nil {
				return struct{}{}, err
			}
		}
		t0 := time.Now()
		for time.Since(t0) < d {
			for range 100 {
				if err := call(n); err != nil {
					return struct{}{}, err
				}
				n++
			}
		}
		ns = float64(time.Since(t0).Nanoseconds()) / float64(n)
		return struct{}{}, nil
	})
	if err != nil {
		return 0, 0, err
	}
	if err := runToEnd(l, task); err != nil {
		return 0, 0, err
	}
	return ns, n + warm, nil
}

// runToEnd runs l until task is done and returns the task's error.
func runToEnd(l *kernel.Loop, task *kernel.Task[struct{}]) error {
	if err := l.RunUntilComplete(task); err != nil {
		return err
	}
	_, err := task.Result()
	return err
}

// loopCallsPerSecond keeps benchInFlight calls of f in flight for d from
// as many tasks on one loop whose function executor is ex, as Python's
// side keeps them from as many coroutines.
func loopCallsPerSecond[A, R any](ex sdk.Executor, d time.Duration, f sdk.Func[A, R], arg A) (float64, int, error) {
	pol := &policy.Policy{Name: "bench-executor", Selector: "epoll"}
	l, err := pol.NewEventLoop()
	if err != nil {
		return 0, 0, err
	}
	defer l.Close()
	l.SetFuncExecutor(ex)
	var n int
	var stop time.Time
	worker := func(co *kernel.Co) (struct{}, error) {
		for time.Now().Before(stop) {
			fut, err := kernel.CallFunc(l, f, arg)
			if err != nil {
				return struct{}{}, err
			}
			if _, err := fut.Await(co); err != nil {
				return struct{}{}, err
			}
			n++
		}
		return struct{}{}, nil
	}
	var secs float64
	main, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
		t0 := time.Now()
		stop = t0.Add(d)
		var tasks []kernel.AwaitableOf[struct{}]
		for range benchInFlight {
			t, err := kernel.CreateTask(l, worker)
			if err != nil {
				return struct{}{}, err
			}
			tasks = append(tasks, t)
		}
		_, err := kernel.Gather(co, tasks...)
		secs = time.Since(t0).Seconds()
		return struct{}{}, err
	})
	if err != nil {
		return 0, 0, err
	}
	if err := runToEnd(l, main); err != nil {
		return 0, 0, err
	}
	return float64(n) / secs, n, nil
}

// callsPerSecond keeps benchInFlight calls in flight for d.
func callsPerSecond(d time.Duration, call func() error) (float64, int, error) {
	var (
		n     atomic.Int64
		first atomic.Value
		wg    sync.WaitGroup
	)
	stop := time.Now().Add(d)
	t0 := time.Now()
	for range benchInFlight {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if err := call(); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return 0, 0, err
	}
	return float64(n.Load()) / time.Since(t0).Seconds(), int(n.Load()), nil
}

const echoRepeats = 3

// echoRoundTrip echoes b through ex echoRepeats times and returns the
// median wall time in milliseconds.
func echoRoundTrip(ctx context.Context, ex sdk.Executor, b []byte) (float64, error) {
	var ms []float64
	for range echoRepeats {
		t0 := time.Now()
		res, err := ex.Call(ctx, "bench.executor.echo", b)
		if err != nil {
			return 0, err
		}
		if len(res) != len(b) {
			return 0, fmt.Errorf("echo of %d bytes returned %d", len(b), len(res))
		}
		ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
	}
	return median(ms), nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func measurePython(python, script string, d time.Duration) (execSide, error) {
	var s execSide
	cmd := exec.Command(python, script, strconv.FormatFloat(d.Seconds(), 'f', 3, 64), strconv.Itoa(benchBigBytes))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return s, fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return s, fmt.Errorf("reading the Python side's report: %w", err)
	}
	return s, nil
}

func writeExecutorTable(w io.Writer, lk, py []execSide) {
	med := func(sides []execSide, f func(execSide) float64) float64 {
		var v []float64
		for _, s := range sides {
			v = append(v, f(s))
		}
		return median(v)
	}
	ratio := func(a, b float64) string {
		if a <= 0 || b <= 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f×", a/b)
	}
	row := func(tw io.Writer, what, format string, f func(execSide) float64, higherBetter bool) {
		a, b := med(lk, f), med(py, f)
		r := ratio(b, a)
		if higherBetter {
			r = ratio(a, b)
		}
		fmt.Fprintf(tw, "%s\t"+format+"\t"+format+"\t%s\t\n", what, a, b, r)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "measure\tloopkernel process\tpython ProcessPool\tadvantage\t\n")
	row(tw, "round trip, 1 worker, wall µs", "%.1f", func(s execSide) float64 { return s.RoundTripNs / 1e3 }, false)
	row(tw, "round trip, 1 worker, CPU µs (all processes)", "%.1f", func(s execSide) float64 { return s.RoundTripCPUNs / 1e3 }, false)
	row(tw, "round trip, 1 worker, thread sleeps per call", "%.1f", func(s execSide) float64 { return s.RoundTripWakes }, false)
	direct := func(what string, f func(execSide) float64) {
		fmt.Fprintf(tw, "%s\t%.1f\t\t\t\n", what, med(lk, f))
	}
	direct("  Pool.Call without a loop, wall µs", func(s execSide) float64 { return s.DirectRTNs / 1e3 })
	direct("  Pool.Call without a loop, CPU µs", func(s execSide) float64 { return s.DirectRTCPUNs / 1e3 })
	direct("  Pool.Call without a loop, sleeps per call", func(s execSide) float64 { return s.DirectRTWakes })
	for _, k := range []string{"1", "2"} {
		row(tw, fmt.Sprintf("calls/s, %d in flight, %s worker(s)", benchInFlight, k), "%.0f", func(s execSide) float64 { return s.Throughput[k] }, true)
		row(tw, fmt.Sprintf("CPU µs per call, %d in flight, %s worker(s)", benchInFlight, k), "%.1f", func(s execSide) float64 { return s.ThroughputCPU[k] / 1e3 }, false)
		fmt.Fprintf(tw, "  Pool.Call from %d goroutines, no loop, calls/s\t%.0f\t\t\t\n", benchInFlight, med(lk, func(s execSide) float64 { return s.DirectThroughput[k] }))
	}
	for _, k := range []string{"1", "2"} {
		a, b := med(lk, func(s execSide) float64 { return s.CPUBound[k] }), med(py, func(s execSide) float64 { return s.CPUBound[k] })
		fmt.Fprintf(tw, "calls/s, ~1 ms CPU each, %s worker(s)\t%.0f\t%.0f\t\t\n", k, a, b)
	}
	scale := func(sides []execSide) string {
		return ratio(med(sides, func(s execSide) float64 { return s.CPUBound["2"] }), med(sides, func(s execSide) float64 { return s.CPUBound["1"] }))
	}
	fmt.Fprintf(tw, "scaling 1 → 2 workers, CPU-bound\t%s\t%s\t\t\n", scale(lk), scale(py))
	row(tw, "100 MiB echo, wall ms", "%.1f", func(s execSide) float64 { return s.BigMs }, false)
	row(tw, "100 MiB echo, CPU ms", "%.1f", func(s execSide) float64 { return s.BigCPUMs }, false)
	fmt.Fprintf(tw, "\t\t\t\t\n")
	fmt.Fprintf(tw, "loopkernel only\twall\tCPU\t\t\n")
	two := func(what string, wall, cpu func(execSide) float64) {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t\t\n", what, med(lk, wall), med(lk, cpu))
	}
	two("32 MiB echo, shared memory, ms", func(s execSide) float64 { return s.ShmMidMs }, func(s execSide) float64 { return s.ShmMidCPUMs })
	two("32 MiB echo, call-plane socket, ms", func(s execSide) float64 { return s.PlainMidMs }, func(s execSide) float64 { return s.PlainMidCPUMs })
	fmt.Fprintf(tw, "round trip, plugin:goroutine (no pool), µs\t%.1f\t\t\t\n", med(lk, func(s execSide) float64 { return s.PluginRTNs })/1e3)
	tw.Flush()
	if len(py) == 0 {
		fmt.Fprintln(w, "python: no measurement (see stderr)")
	}
}

// writePeerScript writes the Python side to a temporary file: a
// ProcessPoolExecutor's workers import the main module, which must be a
// file for the spawn and forkserver start methods.
func writePeerScript() (string, error) {
	dir, err := os.MkdirTemp("", "loopkernel-bench-executor-*")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "executor_peer.py")
	return path, os.WriteFile(path, []byte(executorPeerPy), 0o600)
}

const executorPeerPy = `
import asyncio, json, resource, sys, time
from concurrent.futures import ProcessPoolExecutor

def double(x):
    return 2 * x

def spin(n):
    x = n
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
    return x

def echo(b):
    return b

def calibrate(d):
    # The thread's CPU clock, not the wall clock (see calibrateSpin).
    n = 1 << 8
    while True:
        t0 = time.thread_time()
        spin(n)
        el = time.thread_time() - t0
        if el >= 0.02:
            return max(1, int(n * d / el))
        n *= 2

def usage():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime, s.ru_nvcsw + c.ru_nvcsw)

async def on_pool(workers, body, sleeps=False):
    """Runs body on a fresh pool; returns its result and the CPU seconds
    (and, with sleeps, the voluntary context switches) of the whole,
    workers included (reaped when the pool shuts down)."""
    u0 = usage()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        res = await body(pool)
    u1 = usage()
    if sleeps:
        return res, u1[0] - u0[0], u1[1] - u0[1]
    return res, u1[0] - u0[0]

async def round_trip(loop, pool, d):
    warm = 200
    for i in range(warm):
        await loop.run_in_executor(pool, double, i)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < d:
        for _ in range(20):
            await loop.run_in_executor(pool, double, n)
            n += 1
    return (time.perf_counter() - t0) * 1e9 / n, n + warm

async def per_second(loop, pool, d, fn, arg):
    # Every worker started first, as the Go pool's are.
    await asyncio.gather(*(loop.run_in_executor(pool, double, i) for i in range(64)))
    stop = time.perf_counter() + d
    count = 0
    async def one():
        nonlocal count
        while time.perf_counter() < stop:
            await loop.run_in_executor(pool, fn, arg)
            count += 1
    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(64)))
    return count / (time.perf_counter() - t0), count + 64

async def main():
    d, big = float(sys.argv[1]), int(sys.argv[2])
    loop = asyncio.get_running_loop()
    iters = calibrate(0.001)
    out = {"calls_per_s": {}, "cpu_ns_per_call": {}, "cpu_bound_calls_per_s": {}}
    idle, idle_sleeps = {}, {}
    for w in (1, 2):
        async def start(pool):
            await asyncio.gather(*(loop.run_in_executor(pool, double, i) for i in range(64)))
        _, idle[w], idle_sleeps[w] = await on_pool(w, start, sleeps=True)
    (ns, n), c, sl = await on_pool(1, lambda pool: round_trip(loop, pool, d), sleeps=True)
    out["round_trip_ns"], out["round_trip_cpu_ns"] = ns, (c - idle[1]) * 1e9 / n
    out["round_trip_sleeps"] = (sl - idle_sleeps[1]) / n
    for w in (1, 2):
        (cps, n), c = await on_pool(w, lambda pool: per_second(loop, pool, d, double, 1))
        out["calls_per_s"][str(w)], out["cpu_ns_per_call"][str(w)] = cps, (c - idle[w]) * 1e9 / n
        (cps, _), _ = await on_pool(w, lambda pool: per_second(loop, pool, d, spin, iters))
        out["cpu_bound_calls_per_s"][str(w)] = cps
    b = bytearray(big)
    for i in range(0, big, 4096):
        b[i] = (i >> 12) & 0xFF
    b = bytes(b)
    async def echoes(pool):
        await loop.run_in_executor(pool, double, 1)
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            r = await loop.run_in_executor(pool, echo, b)
            ts.append((time.perf_counter() - t0) * 1e3)
            assert len(r) == big
        return sorted(ts)[1]
    out["big_ms"], c = await on_pool(1, echoes)
    out["big_cpu_ms"] = (c - idle[1]) * 1e3 / 3
    json.dump(out, sys.stdout)

if __name__ == "__main__":
    asyncio.run(main())
`
