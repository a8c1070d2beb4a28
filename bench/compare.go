package bench

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// peersScript is loop_peers.py, embedded so that the loopkernel binary can
// run the comparison from any directory; it is fed to Python on stdin.
//
//go:embed loop_peers.py
var peersScript []byte

// DefaultPython is Debian's interpreter, the one python3-uvloop installs for.
const DefaultPython = "/usr/bin/python3"

// Peers are the Python loops the comparison runs, in column order.
var Peers = []string{"asyncio", "uvloop"}

// CompareOptions configures Compare. Zero values take the defaults noted.
type CompareOptions struct {
	// Rounds is how many times each side is measured; the table shows
	// medians. Rounds alternate which side goes first, so that a neighbour's
	// load, which comes and goes, lands on both sides alike. Default 5.
	Rounds int
	// BenchTime is the Go side's -benchtime per workload and round, and the
	// length of one Python run. Default 500ms.
	BenchTime time.Duration
	// Python is the interpreter; DefaultPython if empty.
	Python string
	// Workloads selects workloads by name; all if empty.
	Workloads []string
	// NewLoop builds the Go loops; EpollLoop if nil.
	NewLoop NewLoopFunc
	// Label names the Go side in the table; "loopkernel" if empty.
	Label string
	// Progress, if set, receives a line per step.
	Progress io.Writer
}

// Stat is one implementation's figures for one workload: medians over the
// rounds, with every round's wall-clock figure kept for inspection.
type Stat struct {
	NsPerOp     float64   `json:"ns_per_op"`
	CPUNsPerOp  float64   `json:"cpu_ns_per_op"`
	AllocsPerOp *float64  `json:"allocs_per_op,omitempty"` // Go only
	Rounds      []float64 `json:"rounds_ns_per_op"`
}

// Row is one workload across implementations.
type Row struct {
	Name string `json:"name"`
	What string `json:"what"`
	// Go is the loopkernel side; Peers maps "asyncio" and "uvloop" (when it
	// could be imported) to theirs.
	Go    Stat            `json:"loopkernel"`
	Peers map[string]Stat `json:"peers"`
}

// Report is the outcome of Compare.
type Report struct {
	Label      string    `json:"label"`
	Python     string    `json:"python"`
	UVLoop     string    `json:"uvloop,omitempty"` // version; empty if not importable
	Rounds     int       `json:"rounds"`
	BenchTime  string    `json:"benchtime"`
	GoMaxProcs int       `json:"gomaxprocs"`
	Started    time.Time `json:"started"`
	Rows       []Row     `json:"workloads"`
}

type peerOutput struct {
	Python  string `json:"python"`
	UVLoop  string `json:"uvloop"`
	Results map[string]map[string]struct {
		NsPerOp    float64 `json:"ns_per_op"`
		CPUNsPerOp float64 `json:"cpu_ns_per_op"`
	} `json:"results"`
}

// setBenchTime sets testing.Benchmark's run length. Outside `go test` the
// testing flags exist only after testing.Init, which registers them on
// flag.CommandLine; nothing else in the loopkernel binary parses that set.
func setBenchTime(d time.Duration) error {
	testing.Init()
	f := flag.Lookup("test.benchtime")
	if f == nil {
		return errors.New("testing flags not registered")
	}
	return f.Value.Set(d.String())
}

// Compare measures the workloads on loopkernel (in this process, through
// testing.Benchmark) and on asyncio and uvloop (through loop_peers.py run by
// opts.Python), interleaving the two sides round by round.
func Compare(ctx context.Context, opts CompareOptions) (*Report, error) {
	if opts.Rounds <= 0 {
		opts.Rounds = 5
	}
	if opts.BenchTime <= 0 {
		opts.BenchTime = 500 * time.Millisecond
	}
	if opts.Python == "" {
		opts.Python = DefaultPython
	}
	if opts.NewLoop == nil {
		opts.NewLoop = EpollLoop
	}
	if opts.Label == "" {
		opts.Label = "loopkernel"
	}
	works := Workloads
	if len(opts.Workloads) > 0 {
		works = nil
		for _, name := range opts.Workloads {
			w, err := Find(name)
			if err != nil {
				return nil, err
			}
			works = append(works, w)
		}
	}
	if err := setBenchTime(opts.BenchTime); err != nil {
		return nil, fmt.Errorf("bench: set benchtime: %w", err)
	}
	progress := func(format string, args ...any) {
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, format+"\n", args...)
		}
	}

	rep := &Report{
		Label:      opts.Label,
		Rounds:     opts.Rounds,
		BenchTime:  opts.BenchTime.String(),
		GoMaxProcs: goMaxProcs(),
		Started:    time.Now().UTC(),
	}
	names := make([]string, len(works))
	for i, w := range works {
		names[i] = w.Name
	}
	type samples struct{ wall, cpu, allocs []float64 }
	goS := make([]samples, len(works))
	peerS := map[string][]samples{}
	for _, p := range Peers {
		peerS[p] = make([]samples, len(works))
	}

	runGo := func(round int) error {
		for i, w := range works {
			if err := ctx.Err(); err != nil {
				return err
			}
			var failed error
			res := testing.Benchmark(func(b *testing.B) {
				w.Bench(b, opts.NewLoop)
				if b.Failed() {
					failed = fmt.Errorf("go workload %s failed", w.Name)
				}
			})
			if failed != nil {
				return failed
			}
			if res.N == 0 {
				return fmt.Errorf("go workload %s failed (see its log above)", w.Name)
			}
			wall := float64(res.T.Nanoseconds()) / float64(res.N)
			goS[i].wall = append(goS[i].wall, wall)
			goS[i].cpu = append(goS[i].cpu, res.Extra["cpu-ns/op"])
			goS[i].allocs = append(goS[i].allocs, float64(res.MemAllocs)/float64(res.N))
			progress("round %d: %s %s %.1f ns/op (%.1f cpu-ns/op)", round, opts.Label, w.Name, wall, res.Extra["cpu-ns/op"])
		}
		return nil
	}
	runPy := func(round int) error {
		out, err := runPeers(ctx, opts.Python, names, opts.BenchTime)
		if err != nil {
			return err
		}
		rep.Python, rep.UVLoop = out.Python, out.UVLoop
		for _, p := range Peers {
			res, ok := out.Results[p]
			if !ok {
				continue
			}
			for i, name := range names {
				r, ok := res[name]
				if !ok {
					return fmt.Errorf("bench: loop_peers.py gave no %s result for %s", p, name)
				}
				peerS[p][i].wall = append(peerS[p][i].wall, r.NsPerOp)
				peerS[p][i].cpu = append(peerS[p][i].cpu, r.CPUNsPerOp)
				progress("round %d: %s %s %.1f ns/op (%.1f cpu-ns/op)", round, p, name, r.NsPerOp, r.CPUNsPerOp)
			}
		}
		return nil
	}
	for round := 1; round <= opts.Rounds; round++ {
		first, second := runGo, runPy
		if round%2 == 0 {
			first, second = runPy, runGo
		}
		if err := first(round); err != nil {
			return nil, err
		}
		if err := second(round); err != nil {
			return nil, err
		}
	}

	for i, w := range works {
		row := Row{Name: w.Name, What: w.What, Peers: map[string]Stat{}}
		allocs := median(goS[i].allocs)
		row.Go = Stat{NsPerOp: median(goS[i].wall), CPUNsPerOp: median(goS[i].cpu), AllocsPerOp: &allocs, Rounds: goS[i].wall}
		for _, p := range Peers {
			if s := peerS[p][i]; len(s.wall) > 0 {
				row.Peers[p] = Stat{NsPerOp: median(s.wall), CPUNsPerOp: median(s.cpu), Rounds: s.wall}
			}
		}
		rep.Rows = append(rep.Rows, row)
	}
	return rep, nil
}

// runPeers runs loop_peers.py once, one measured run per loop and workload.
func runPeers(ctx context.Context, python string, workloads []string, minTime time.Duration) (*peerOutput, error) {
	cmd := exec.CommandContext(ctx, python, "-",
		"--workloads", strings.Join(workloads, ","),
		"--loops", strings.Join(Peers, ","),
		"--min-time", fmt.Sprintf("%g", minTime.Seconds()),
		"--repeat", "1")
	cmd.Stdin = bytes.NewReader(peersScript)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("bench: %s loop_peers.py: %w: %s", python, err, strings.TrimSpace(stderr.String()))
	}
	var out peerOutput
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("bench: loop_peers.py output: %w", err)
	}
	return &out, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func goMaxProcs() int { return runtime.GOMAXPROCS(0) }

// WriteTable prints the report as two tables, wall clock and CPU time, each
// with loopkernel's figure and how many times slower each peer is (a ratio
// above 1 means loopkernel is faster).
func (r *Report) WriteTable(w io.Writer) error {
	uv := "not importable"
	if r.UVLoop != "" {
		uv = r.UVLoop
	}
	fmt.Fprintf(w, "%s vs Python %s asyncio and uvloop %s: median of %d interleaved rounds, GOMAXPROCS=%d\n",
		r.Label, r.Python, uv, r.Rounds, r.GoMaxProcs)
	for _, cpu := range []bool{false, true} {
		unit := "wall ns/op"
		if cpu {
			unit = "CPU ns/op"
		}
		fmt.Fprintf(w, "\n%s (ratio = peer / %s)\n", unit, r.Label)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		header := "workload\t" + r.Label + "\t"
		for _, p := range Peers {
			header += p + "\t" + p + " ratio\t"
		}
		if !cpu {
			header += "allocs/op\t"
		}
		fmt.Fprintln(tw, header)
		for _, row := range r.Rows {
			g := pick(row.Go, cpu)
			line := fmt.Sprintf("%s\t%.1f\t", row.Name, g)
			for _, p := range Peers {
				s, ok := row.Peers[p]
				if !ok {
					line += "-\t-\t"
					continue
				}
				v := pick(s, cpu)
				line += fmt.Sprintf("%.1f\t%.1fx\t", v, v/g)
			}
			if !cpu && row.Go.AllocsPerOp != nil {
				line += fmt.Sprintf("%.2f\t", *row.Go.AllocsPerOp)
			}
			fmt.Fprintln(tw, line)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	for _, row := range r.Rows {
		fmt.Fprintf(w, "  %-11s %s\n", row.Name, row.What)
	}
	return nil
}

func pick(s Stat, cpu bool) float64 {
	if cpu {
		return s.CPUNsPerOp
	}
	return s.NsPerOp
}
