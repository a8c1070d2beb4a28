package echobench

import (
	"bufio"
	"context"
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
)

//go:embed echo_server.py
var pythonServer []byte

// ServerSpec is one server under test: a name for the table and the command
// that starts it.
type ServerSpec struct {
	Name string
	Argv []string
	Env  []string
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
	Rounds   int
	Progress io.Writer
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
	Rounds    int     `json:"rounds"`
	Error     string  `json:"error,omitempty"`
}

// PythonPeers returns the asyncio and uvloop servers that python3 on this
// machine can run (uvloop only when importable), with the reason for any
// that cannot.
func PythonPeers(python string) ([]ServerSpec, []string, error) {
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
	specs := []ServerSpec{{Name: "asyncio", Argv: []string{python, script, "--loop", "asyncio", "--addr", "127.0.0.1:0"}}}
	var missing []string
	if err := exec.Command(python, "-c", "import uvloop").Run(); err == nil {
		specs = append(specs, ServerSpec{Name: "uvloop", Argv: []string{python, script, "--loop", "uvloop", "--addr", "127.0.0.1:0"}})
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

func start(ctx context.Context, s ServerSpec) (*server, error) {
	cmd := exec.CommandContext(ctx, s.Argv[0], s.Argv[1:]...)
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
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
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("start %s: no LISTENING line within 15s", s.Name)
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
	servers := make([]*server, len(cfg.Servers))
	startErr := make([]error, len(cfg.Servers))
	for i, s := range cfg.Servers {
		servers[i], startErr[i] = start(ctx, s)
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

	var rows []Row
	for _, size := range cfg.Sizes {
		for _, conns := range cfg.Conns {
			samples := make([][]sample, len(servers))
			errs := make([]error, len(servers))
			for r := 0; r < cfg.Rounds; r++ {
				for k := range servers {
					i := (k + r) % len(servers)
					s := servers[i]
					if s == nil || errs[i] != nil {
						continue
					}
					smp, err := measure(ctx, s, LoadConfig{
						Addr: s.addr, Conns: conns, Size: size, Pipeline: cfg.Pipeline,
						Warmup: cfg.Warmup, Duration: cfg.Duration,
					})
					if err != nil {
						if ctx.Err() != nil {
							return rows, ctx.Err()
						}
						errs[i] = err
						fmt.Fprintf(progress, "  %s size=%d conns=%d: %v\n", s.spec.Name, size, conns, err)
						continue
					}
					samples[i] = append(samples[i], smp)
					fmt.Fprintf(progress, "  round %d/%d size=%-6d conns=%-4d %-22s %10.0f req/s %7.2f cpu-µs/req\n",
						r+1, cfg.Rounds, size, conns, s.spec.Name, smp.rps, smp.cpuPerReq)
				}
			}
			for i, spec := range cfg.Servers {
				row := Row{Server: spec.Name, Size: size, Conns: conns, Pipeline: max(cfg.Pipeline, 1), Rounds: len(samples[i])}
				switch {
				case startErr[i] != nil:
					row.Error = startErr[i].Error()
				case errs[i] != nil:
					row.Error = errs[i].Error()
				}
				if len(samples[i]) > 0 {
					row.ReqPerSec = median(samples[i], func(s sample) float64 { return s.rps })
					row.P50us = median(samples[i], func(s sample) float64 { return s.p50 })
					row.P99us = median(samples[i], func(s sample) float64 { return s.p99 })
					row.CPUusReq = median(samples[i], func(s sample) float64 { return s.cpuPerReq })
				}
				rows = append(rows, row)
			}
		}
	}
	return rows, nil
}

type sample struct{ rps, p50, p99, cpuPerReq float64 }

func measure(ctx context.Context, s *server, lc LoadConfig) (sample, error) {
	var cpu0, cpu1 time.Duration
	var cpuErr error
	res, err := Load(ctx, lc, func(open bool) {
		c, err := processTreeCPU(s.cmd.Process.Pid)
		if err != nil {
			cpuErr = err
		}
		if open {
			cpu0 = c
		} else {
			cpu1 = c
		}
	})
	if err != nil {
		return sample{}, err
	}
	if cpuErr != nil {
		return sample{}, cpuErr
	}
	if res.Requests == 0 {
		return sample{}, errors.New("no request completed in the window")
	}
	return sample{
		rps:       float64(res.Requests) / res.Window.Seconds(),
		p50:       float64(res.P50) / float64(time.Microsecond),
		p99:       float64(res.P99) / float64(time.Microsecond),
		cpuPerReq: float64(cpu1-cpu0) / float64(time.Microsecond) / float64(res.Requests),
	}, nil
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
// request as a ratio to the floor's and to uvloop's where they were
// measured.
func WriteTable(w io.Writer, rows []Row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "size\tconns\tserver\treq/s\tp50 µs\tp99 µs\tcpu-µs/req\t×floor\t×uvloop\t")
	ref := func(size, conns int, name string) float64 {
		for _, r := range rows {
			if r.Size == size && r.Conns == conns && r.Server == name && r.Error == "" {
				return r.CPUusReq
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
		cell := fmt.Sprintf("%d/%d", r.Size, r.Conns)
		if last != "" && cell != last {
			fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t")
		}
		last = cell
		if r.Error != "" && r.Rounds == 0 {
			fmt.Fprintf(tw, "%s\t%d\t%s\tfailed: %s\t\t\t\t\t\t\n", sizeName(r.Size), r.Conns, r.Server, r.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%.0f\t%.0f\t%.2f\t%s\t%s\t\n", sizeName(r.Size), r.Conns, r.Server,
			r.ReqPerSec, r.P50us, r.P99us, r.CPUusReq,
			ratio(r.CPUusReq, ref(r.Size, r.Conns, "floor")), ratio(r.CPUusReq, ref(r.Size, r.Conns, "uvloop")))
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
