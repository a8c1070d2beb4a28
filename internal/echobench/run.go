package echobench

import (
	"bufio"
	"context"
	"crypto/tls"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

//go:embed echo_server.py
var pythonServer []byte

// ServerSpec is one server under test: a name for the table and the command
// that starts it.
type ServerSpec struct {
	Name string
	Argv []string
	Env  []string
	// StartTimeout bounds the wait for the LISTENING line: 15 s when
	// zero, longer for a server run under valgrind.
	StartTimeout time.Duration
}

func (s ServerSpec) startTimeout() time.Duration {
	if s.StartTimeout > 0 {
		return s.StartTimeout
	}
	return 15 * time.Second
}

// Config is a whole benchmark: servers, the grid of sizes and connection
// counts, and timing.
type Config struct {
	Servers  []ServerSpec
	Sizes    []int
	Conns    []int
	Pipeline int
	Warmup   time.Duration
	Duration time.Duration
	// Rounds repeats each cell; servers are interleaved within a round and
	// the order rotates between rounds. The table reports medians.
	Rounds int
	// Engines are the load generators, each measuring every server in
	// the same interleaved rounds (EngineEpoll alone when empty).
	Engines []Engine
	// Pin puts every server (its whole process tree) on one CPU and the
	// client on another, when this process may use two; Run says on
	// Progress when it cannot.
	Pin bool
	// Probe, when set, is a shell command run during each measured window
	// with {pid} replaced by the server's process id, {name} by the
	// server's name (with "/" turned to "-"), {client}, {size} and {conns}
	// by the load's, and sent SIGINT as the window closes: `perf stat -e raw_syscalls:sys_enter -p {pid}` counts the
	// server's system calls over the same requests. Its output goes to
	// Progress.
	Probe    string
	Progress io.Writer
	// TLS, when set, makes every load a TLS client with this
	// configuration (the servers must serve TLS, and the engine be go).
	TLS *tls.Config
}

// Row is one server on one cell of the grid, medians over the rounds.
type Row struct {
	Server    string  `json:"server"`
	Size      int     `json:"size"`
	Conns     int     `json:"conns"`
	Pipeline  int     `json:"pipeline"`
	ReqPerSec float64 `json:"req_per_sec"`
	P50us     float64 `json:"p50_us"`
	P99us     float64 `json:"p99_us"`
	CPUusReq  float64 `json:"server_cpu_us_per_req"`
	// SleepsReq is the server's voluntary context switches per request:
	// how often one of its threads blocked, the inverse of its batching.
	SleepsReq float64 `json:"server_sleeps_per_req"`
	// ClientCPUusReq is this process's CPU per request: the client's cost.
	// Near 1 s per second of window, the client, not the server, is the
	// bottleneck, and the server gets small batches.
	ClientCPUusReq float64 `json:"client_cpu_us_per_req"`
	// EventsWait is the epoll client's readiness events per epoll_wait
	// (0 with the Go client, which has no such count).
	EventsWait float64 `json:"client_events_per_wait,omitempty"`
	Client     Engine  `json:"client"`
	Pinned     bool    `json:"pinned"`
	Rounds     int     `json:"rounds"`
	Error      string  `json:"error,omitempty"`
}

// PythonPeers returns the asyncio and uvloop servers that python3 on this
// machine can run (uvloop only when importable), with the reason for any
// that cannot.
func PythonPeers(python string, extra ...string) ([]ServerSpec, []string, error) {
	if _, err := os.Stat(python); err != nil {
		return nil, []string{fmt.Sprintf("asyncio and uvloop: %s not found", python)}, nil
	}
	dir, err := os.MkdirTemp("", "loopkernel-bench-")
	if err != nil {
		return nil, nil, err
	}
	script := filepath.Join(dir, "echo_server.py")
	if err := os.WriteFile(script, pythonServer, 0o600); err != nil {
		return nil, nil, err
	}
	specs := []ServerSpec{{Name: "asyncio", Argv: append([]string{python, script, "--loop", "asyncio", "--addr", "127.0.0.1:0"}, extra...)}}
	var missing []string
	if err := exec.Command(python, "-c", "import uvloop").Run(); err == nil {
		specs = append(specs, ServerSpec{Name: "uvloop", Argv: append([]string{python, script, "--loop", "uvloop", "--addr", "127.0.0.1:0"}, extra...)})
	} else {
		missing = append(missing, "uvloop: python3-uvloop is not installed (scripts/install-deps.sh installs it)")
	}
	return specs, missing, nil
}

type server struct {
	spec ServerSpec
	cmd  *exec.Cmd
	addr string
}

// start starts a server and waits for its LISTENING line. With cpu >= 0
// the server starts on that CPU alone, as under taskset(1): the Go
// runtime sizes GOMAXPROCS from the CPUs it may use at start, and a server
// pinned only after it started would run with the wrong count until the
// runtime noticed.
func start(ctx context.Context, s ServerSpec, cpu int) (*server, error) {
	cmd := exec.CommandContext(ctx, s.Argv[0], s.Argv[1:]...)
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := startOn(cmd, cpu); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "LISTENING "); ok {
				lines <- addr
				break
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case addr := <-lines:
		return &server{spec: s, cmd: cmd, addr: addr}, nil
	case <-time.After(s.startTimeout()):
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("start %s: no LISTENING line within %v", s.Name, s.startTimeout())
	}
}

func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// Run starts every server, measures every cell of the grid for each server
// in interleaved rounds, stops the servers and returns one row per server
// and cell. A server that fails keeps its rows with Error set; the others go
// on.
func Run(ctx context.Context, cfg Config) ([]Row, error) {
	if cfg.Rounds < 1 {
		cfg.Rounds = 1
	}
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	if len(cfg.Engines) == 0 {
		cfg.Engines = []Engine{EngineEpoll}
	}
	probe := probeSpec{command: cfg.Probe}
	unix.SchedGetaffinity(0, &probe.cpus)
	serverCPU, clientCPU, pin := cpuPair()
	if cfg.Pin && !pin {
		fmt.Fprintln(progress, "  not pinned: this process may run on fewer than two CPUs")
	}
	pin = pin && cfg.Pin
	servers := make([]*server, len(cfg.Servers))
	startErr := make([]error, len(cfg.Servers))
	for i, s := range cfg.Servers {
		cpu := -1
		if pin {
			cpu = serverCPU
		}
		servers[i], startErr[i] = start(ctx, s, cpu)
		if startErr[i] == nil && pin {
			// Started pinned; this checks that every thread and child
			// (a plugin) still is.
			startErr[i] = pinTree(servers[i].cmd.Process.Pid, serverCPU)
		}
		if startErr[i] != nil {
			fmt.Fprintf(progress, "  %s: %v\n", s.Name, startErr[i])
		}
	}
	defer func() {
		for _, s := range servers {
			if s != nil {
				s.stop()
			}
		}
	}()

	// A contestant is a server under one engine; the contestants take
	// turns within a round, and the order rotates between rounds.
	nServers := len(servers)
	n := nServers * len(cfg.Engines)
	var rows []Row
	for _, size := range cfg.Sizes {
		for _, conns := range cfg.Conns {
			samples := make([][]sample, n)
			errs := make([]error, n)
			for r := 0; r < cfg.Rounds; r++ {
				for k := 0; k < n; k++ {
					j := (k + r) % n
					s, engine := servers[j%nServers], cfg.Engines[j/nServers]
					if s == nil || errs[j] != nil {
						continue
					}
					smp, err := measure(ctx, s, LoadConfig{
						Addr: s.addr, Engine: engine, Conns: conns, Size: size, Pipeline: cfg.Pipeline,
						Warmup: cfg.Warmup, Duration: cfg.Duration, PinClient: pin, ClientCPU: clientCPU, TLS: cfg.TLS,
					}, probe, progress)
					if err != nil {
						if ctx.Err() != nil {
							return rows, ctx.Err()
						}
						errs[j] = err
						fmt.Fprintf(progress, "  %s size=%d conns=%d client=%s: %v\n", s.spec.Name, size, conns, engine, err)
						continue
					}
					samples[j] = append(samples[j], smp)
					fmt.Fprintf(progress, "  round %d/%d size=%-6d conns=%-4d client=%-5s %-22s %10.0f req/s %7.2f cpu-µs/req %6.3f sleeps/req\n",
						r+1, cfg.Rounds, size, conns, engine, s.spec.Name, smp.rps, smp.cpuPerReq, smp.sleepsPerReq)
				}
			}
			for j := 0; j < n; j++ {
				i, engine := j%nServers, cfg.Engines[j/nServers]
				row := Row{Server: cfg.Servers[i].Name, Size: size, Conns: conns, Pipeline: max(cfg.Pipeline, 1),
					Client: engine, Pinned: pin, Rounds: len(samples[j])}
				switch {
				case startErr[i] != nil:
					row.Error = startErr[i].Error()
				case errs[j] != nil:
					row.Error = errs[j].Error()
				}
				if smp := samples[j]; len(smp) > 0 {
					row.ReqPerSec = median(smp, func(s sample) float64 { return s.rps })
					row.P50us = median(smp, func(s sample) float64 { return s.p50 })
					row.P99us = median(smp, func(s sample) float64 { return s.p99 })
					row.CPUusReq = median(smp, func(s sample) float64 { return s.cpuPerReq })
					row.SleepsReq = median(smp, func(s sample) float64 { return s.sleepsPerReq })
					row.ClientCPUusReq = median(smp, func(s sample) float64 { return s.clientCPUPerReq })
					row.EventsWait = median(smp, func(s sample) float64 { return s.eventsPerWait })
				}
				rows = append(rows, row)
			}
		}
	}
	return rows, nil
}

type sample struct {
	rps, p50, p99, cpuPerReq, sleepsPerReq, clientCPUPerReq, eventsPerWait float64
}

func measure(ctx context.Context, s *server, lc LoadConfig, probe probeSpec, progress io.Writer) (sample, error) {
	pid := s.cmd.Process.Pid
	self := os.Getpid()
	var cpu0, cpu1, client0, client1 time.Duration
	var sleeps0, sleeps1 int64
	var cpuErr error
	var p *probeRun
	res, err := Load(ctx, lc, func(open bool) {
		if !open {
			// Read the counters first: stopping the probe takes a while.
			cpu1, cpuErr = processTreeCPU(pid)
			client1, _ = processCPU(self)
			sleeps1 = processTreeSleeps(pid)
			p.stop()
			return
		}
		if probe.command != "" {
			p = startProbe(probe, s.spec.Name, pid, lc, progress)
		}
		sleeps0 = processTreeSleeps(pid)
		client0, _ = processCPU(self)
		cpu0, cpuErr = processTreeCPU(pid)
	})
	if err != nil {
		p.stop()
		return sample{}, err
	}
	if cpuErr != nil {
		return sample{}, cpuErr
	}
	if res.Requests == 0 {
		return sample{}, errors.New("no request completed in the window")
	}
	smp := sample{
		rps:             float64(res.Requests) / res.Window.Seconds(),
		p50:             float64(res.P50) / float64(time.Microsecond),
		p99:             float64(res.P99) / float64(time.Microsecond),
		cpuPerReq:       float64(cpu1-cpu0) / float64(time.Microsecond) / float64(res.Requests),
		sleepsPerReq:    float64(sleeps1-sleeps0) / float64(res.Requests),
		clientCPUPerReq: float64(client1-client0) / float64(time.Microsecond) / float64(res.Requests),
	}
	if res.Client.Waits > 0 {
		smp.eventsPerWait = float64(res.Client.Events) / float64(res.Client.Waits)
	}
	if p != nil {
		fmt.Fprintf(progress, "  probe %s client=%s size=%d conns=%d: %d requests in the window\n",
			s.spec.Name, lc.Engine, lc.Size, lc.Conns, res.Requests)
	}
	return smp, nil
}

func median(s []sample, f func(sample) float64) float64 {
	v := make([]float64, len(s))
	for i, x := range s {
		v[i] = f(x)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// WriteTable prints the rows grouped by cell, with each server's CPU per
// request as a ratio to the floor's and to uvloop's measured by the same
// client engine, its sleeps per request, and the client's events per wait.
func WriteTable(w io.Writer, rows []Row) {
	if len(rows) > 0 {
		pinned := "unpinned"
		if rows[0].Pinned {
			pinned = "servers and client pinned to different CPUs"
		}
		fmt.Fprintf(w, "%s; ratios compare servers under the same client\n", pinned)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "size\tconns\tclient\tserver\treq/s\tp50 µs\tp99 µs\tcpu-µs/req\t×floor\t×uvloop\tsleeps/req\tclient cpu-µs/req\tclient ev/wait\t")
	ref := func(r Row, name string) float64 {
		for _, o := range rows {
			if o.Size == r.Size && o.Conns == r.Conns && o.Client == r.Client && o.Server == name && o.Error == "" {
				return o.CPUusReq
			}
		}
		return 0
	}
	ratio := func(v, base float64) string {
		if base == 0 || v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", v/base)
	}
	last := ""
	for _, r := range rows {
		cell := fmt.Sprintf("%d/%d/%s", r.Size, r.Conns, r.Client)
		if last != "" && cell != last {
			fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t\t\t\t\t")
		}
		last = cell
		if r.Error != "" && r.Rounds == 0 {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\tfailed: %s\t\t\t\t\t\t\t\t\t\n", sizeName(r.Size), r.Conns, r.Client, r.Server, r.Error)
			continue
		}
		evw := "-"
		if r.EventsWait > 0 {
			evw = fmt.Sprintf("%.2f", r.EventsWait)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.2f\t%s\t%s\t%.3f\t%.2f\t%s\t\n", sizeName(r.Size), r.Conns, r.Client, r.Server,
			r.ReqPerSec, r.P50us, r.P99us, r.CPUusReq,
			ratio(r.CPUusReq, ref(r, "floor")), ratio(r.CPUusReq, ref(r, "uvloop")),
			r.SleepsReq, r.ClientCPUusReq, evw)
	}
	tw.Flush()
}

// WriteJSON writes the rows for machines.
func WriteJSON(w io.Writer, rows []Row) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}

func sizeName(n int) string {
	switch {
	case n >= 1024 && n%1024 == 0:
		return fmt.Sprintf("%d KiB", n/1024)
	default:
		return fmt.Sprintf("%d B", n)
	}
}
