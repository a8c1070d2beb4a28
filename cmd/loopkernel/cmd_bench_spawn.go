package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/loopkernel/loopkernel/bench"
	"github.com/loopkernel/loopkernel/kernel"
)

var spawnOpts struct {
	children, conc int
	size           int64
}

// spawnFlags adds the flags only bench spawn has; it shares --rounds
// (default 3 here), --python and --json with the other benchmarks.
func spawnFlags(fs *flag.FlagSet) {
	fs.IntVar(&spawnOpts.children, "children", 1000, "spawn: children started and reaped per side and round")
	fs.IntVar(&spawnOpts.conc, "concurrency", 16, "spawn: children running at a time")
	fs.Int64Var(&spawnOpts.size, "bytes", 1<<30, "spawn: bytes sent through cat per side and round")
}

// benchSpawn is `loopkernel bench spawn`: subprocess costs against asyncio
// and uvloop in the same run, the sides taking turns each round.
//
//   - spawn: --children runs of /bin/true, --concurrency at a time, each
//     started, waited for and reaped (standard streams on /dev/null):
//     children per second.
//   - pipe: --bytes through cat, written to its stdin and read back from
//     its stdout by the loop (256 KiB writes, default water marks, the
//     writer paused by flow control): MB/s of the round trip.
//
// Each side times its own work, so interpreter start-up is not counted.
func benchSpawn(e *env, args []string) error {
	if len(args) > 0 {
		return usagef("bench spawn takes no arguments, only flags")
	}
	children, conc, size := &spawnOpts.children, &spawnOpts.conc, &spawnOpts.size
	r0 := benchFlag("rounds", 3)
	rounds := &r0
	python := benchFlag("python", bench.DefaultPython)
	jsonPath := benchFlag("json", "")
	if *children < 1 || *conc < 1 || *size < 1 || *rounds < 1 {
		return usagef("--children, --concurrency, --bytes and --rounds must be positive")
	}
	for _, tool := range []string{"/bin/true", "cat"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("bench spawn needs %s: %w", tool, err)
		}
	}
	p, err := e.policy()
	if err != nil {
		return err
	}
	label := "loopkernel"
	if p.Name != "" {
		label += "(" + p.Name + ")"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	sides := []string{label, "asyncio", "uvloop"}
	// Per side: children/s, CPU µs per child, MB/s, CPU ms per 100 MB.
	type sample struct{ rate, cpuChild, mbs, cpuMB []float64 }
	res := map[string]*sample{}
	for _, s := range sides {
		res[s] = &sample{}
	}
	fmt.Fprintf(e.stderr, "bench spawn: %d children (%d at a time) and %d MiB through cat per side, %d rounds\n",
		*children, *conc, *size>>20, *rounds)
	for r := range *rounds {
		for _, side := range sides {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var sr spawnResult
			var err error
			if side == label {
				sr, err = lkSpawnBench(p.NewEventLoop, *children, *conc, *size)
			} else {
				sr, err = pySpawnBench(ctx, python, side, *children, *conc, *size)
			}
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, side, err)
			}
			x := res[side]
			x.rate = append(x.rate, float64(*children)/sr.spawn.Seconds())
			x.cpuChild = append(x.cpuChild, float64(sr.spawnCPU.Microseconds())/float64(*children))
			x.mbs = append(x.mbs, float64(*size)/1e6/sr.pipe.Seconds())
			x.cpuMB = append(x.cpuMB, float64(sr.pipeCPU.Milliseconds())/(float64(*size)/1e8))
			fmt.Fprintf(e.stderr, "  round %d %-22s spawn %6.0f children/s (%5.0f CPU-µs each)   pipe %6.0f MB/s (%5.0f CPU-ms per 100 MB)\n",
				r+1, side, x.rate[r], x.cpuChild[r], x.mbs[r], x.cpuMB[r])
		}
	}
	type row struct {
		Side          string  `json:"side"`
		ChildrenPerS  float64 `json:"children_per_s"`
		CPUusPerChild float64 `json:"cpu_us_per_child"`
		PipeMBPerS    float64 `json:"pipe_mb_per_s"`
		CPUmsPer100MB float64 `json:"cpu_ms_per_100mb"`
	}
	var rows []row
	for _, s := range sides {
		x := res[s]
		rows = append(rows, row{s, median(x.rate), median(x.cpuChild), median(x.mbs), median(x.cpuMB)})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "side\tchildren/s\t×\tCPU-µs/child\t×\tpipe MB/s\t×\tCPU-ms/100MB\t×\t\n")
	for _, r := range rows {
		b := rows[0]
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.0f\t%.2f\t%.0f\t%.2f\t%.0f\t%.2f\t\n", r.Side,
			r.ChildrenPerS, b.ChildrenPerS/r.ChildrenPerS, r.CPUusPerChild, r.CPUusPerChild/b.CPUusPerChild,
			r.PipeMBPerS, b.PipeMBPerS/r.PipeMBPerS, r.CPUmsPer100MB, r.CPUmsPer100MB/b.CPUmsPer100MB)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "medians of %d rounds; each × is %s's advantage over that side (above 1: %s is faster or cheaper);\nCPU counts the process and its reaped children (the children's exec, cat's copying)\n", *rounds, label, label)
	if jsonPath != "" {
		b, _ := json.MarshalIndent(rows, "", "  ")
		if err := os.WriteFile(jsonPath, b, 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	return nil
}

// nullProc is a SubprocessProtocol that ignores everything.
type nullProc struct{}

func (nullProc) ConnectionMade(kernel.BaseTransport) {}
func (nullProc) ConnectionLost(error)                {}
func (nullProc) PipeDataReceived(int, []byte)        {}
func (nullProc) PipeConnectionLost(int, error)       {}
func (nullProc) ProcessExited()                      {}

// catProc pushes size bytes into cat's stdin under flow control and counts
// what comes back.
type catProc struct {
	in      kernel.WriteTransport
	chunk   []byte
	left    int64
	got     int64
	paused  bool
	eof     bool
	lost    bool
	failure error
}

func (c *catProc) ConnectionMade(t kernel.BaseTransport) {
	c.in = t.(kernel.SubprocessTransport).GetPipeTransport(0).(kernel.WriteTransport)
	c.fill()
}

func (c *catProc) fill() {
	for !c.paused && c.left > 0 {
		k := min(c.left, int64(len(c.chunk)))
		if err := c.in.Write(c.chunk[:k]); err != nil {
			c.failure = err
			return
		}
		c.left -= k
	}
	if c.left == 0 && !c.eof {
		c.eof = true
		c.in.Close()
	}
}

func (c *catProc) PauseWriting()                    { c.paused = true }
func (c *catProc) ResumeWriting()                   { c.paused = false; c.fill() }
func (c *catProc) PipeDataReceived(_ int, b []byte) { c.got += int64(len(b)) }
func (c *catProc) PipeConnectionLost(fd int, err error) {
	if err != nil && c.failure == nil {
		c.failure = fmt.Errorf("pipe %d: %w", fd, err)
	}
}
func (c *catProc) ProcessExited()       {}
func (c *catProc) ConnectionLost(error) { c.lost = true }

// lkSpawnBench runs both workloads on a fresh loop.
func lkSpawnBench(newLoop func() (*kernel.Loop, error), children, conc int, size int64) (res spawnResult, err error) {
	l, err := newLoop()
	if err != nil {
		return res, err
	}
	defer l.Close()
	null := &kernel.SubprocessOptions{Stdin: kernel.StdioDevNull, Stdout: kernel.StdioDevNull, Stderr: kernel.StdioDevNull}
	task, err := kernel.CreateTask(l, func(co *kernel.Co) (spawnResult, error) {
		var out spawnResult
		start, cpu := time.Now(), cpuTime()
		var workers []*kernel.Task[struct{}]
		for w := range conc {
			k := children / conc
			if w < children%conc {
				k++
			}
			t, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
				for range k {
					tr, _, err := kernel.SubprocessExec(co, func() nullProc { return nullProc{} }, "/bin/true", nil, null)
					if err != nil {
						return struct{}{}, err
					}
					if rc, err := tr.Wait(co); err != nil || rc != 0 {
						return struct{}{}, fmt.Errorf("/bin/true: rc %d: %v", rc, err)
					}
				}
				return struct{}{}, nil
			})
			if err != nil {
				return out, err
			}
			workers = append(workers, t)
		}
		for _, t := range workers {
			if _, err := t.Await(co); err != nil {
				return out, err
			}
		}
		out.spawn, out.spawnCPU = time.Since(start), cpuTime()-cpu

		start, cpu = time.Now(), cpuTime()
		cp := &catProc{chunk: make([]byte, 256<<10), left: size}
		if _, _, err := kernel.SubprocessExec(co, func() *catProc { return cp }, "cat", nil, &kernel.SubprocessOptions{Stderr: kernel.StdioDevNull}); err != nil {
			return out, err
		}
		for !cp.lost {
			if err := co.Sleep(time.Millisecond); err != nil {
				return out, err
			}
		}
		out.pipe, out.pipeCPU = time.Since(start), cpuTime()-cpu
		if cp.failure != nil || cp.got != size {
			return out, fmt.Errorf("cat: %d of %d bytes back: %v", cp.got, size, cp.failure)
		}
		return out, nil
	})
	if err != nil {
		return res, err
	}
	if err := l.RunUntilComplete(task); err != nil {
		return res, err
	}
	return task.Result()
}

// spawnResult is one side's round: wall and CPU time (this process and
// its reaped children) of each workload.
type spawnResult struct {
	spawn, spawnCPU, pipe, pipeCPU time.Duration
}

// cpuTime is the user and system time of this process and of its reaped
// children so far.
func cpuTime() time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return total
}

// spawnPeerScript is the Python side: the same two workloads on asyncio or
// uvloop, each timed inside the interpreter; it prints one JSON line.
const spawnPeerScript = `
import asyncio, json, resource, sys, time
loopname, children, conc, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if loopname == "uvloop":
    import uvloop
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

class Cat(asyncio.SubprocessProtocol):
    def __init__(self, done):
        self.chunk = memoryview(bytes(256 << 10))
        self.left, self.got, self.paused, self.eof, self.done = size, 0, False, False, done
    def connection_made(self, tr):
        self.stdin = tr.get_pipe_transport(0)
        self.fill()
    def fill(self):
        while not self.paused and self.left > 0:
            k = min(self.left, len(self.chunk))
            self.stdin.write(self.chunk[:k])
            self.left -= k
        if self.left == 0 and not self.eof:
            self.eof = True
            # Not from inside resume_writing: CPython 3.11's write pipe then
            # drops what the last write buffered.
            asyncio.get_running_loop().call_soon(self.stdin.close)
    def pause_writing(self): self.paused = True
    def resume_writing(self):
        self.paused = False
        self.fill()
    def pipe_data_received(self, fd, data): self.got += len(data)
    def connection_lost(self, exc):
        if not self.done.done(): self.done.set_result(self.got)

async def main():
    DEV = asyncio.subprocess.DEVNULL
    async def worker(k):
        for _ in range(k):
            p = await asyncio.create_subprocess_exec("/bin/true", stdin=DEV, stdout=DEV, stderr=DEV)
            rc = await p.wait()
            assert rc == 0
    def cpu():
        return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))
    loop = asyncio.get_running_loop()
    t0, c0 = time.perf_counter(), cpu()
    await asyncio.gather(*(worker(children // conc + (1 if w < children % conc else 0)) for w in range(conc)))
    spawn, spawn_cpu = time.perf_counter() - t0, cpu() - c0
    t0, c0 = time.perf_counter(), cpu()
    done = loop.create_future()
    await loop.subprocess_exec(lambda: Cat(done), "cat", stderr=DEV)
    got = await done
    pipe, pipe_cpu = time.perf_counter() - t0, cpu() - c0
    assert got == size, (got, size)
    print(json.dumps({"spawn": spawn, "spawn_cpu": spawn_cpu, "pipe": pipe, "pipe_cpu": pipe_cpu}))

asyncio.run(main())
`

// pySpawnBench runs the Python side on loopname ("asyncio" or "uvloop").
func pySpawnBench(ctx context.Context, python, loopname string, children, conc int, size int64) (res spawnResult, err error) {
	cmd := exec.CommandContext(ctx, python, "-c", spawnPeerScript, loopname, fmt.Sprint(children), fmt.Sprint(conc), fmt.Sprint(size))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("%s %s: %w: %s", python, loopname, err, bytes.TrimSpace(errb.Bytes()))
	}
	var r struct {
		Spawn    float64 `json:"spawn"`
		SpawnCPU float64 `json:"spawn_cpu"`
		Pipe     float64 `json:"pipe"`
		PipeCPU  float64 `json:"pipe_cpu"`
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return res, fmt.Errorf("%s %s: bad report %q: %w", python, loopname, out.String(), err)
	}
	if r.Spawn <= 0 || r.Pipe <= 0 {
		return res, errors.New(loopname + ": empty report")
	}
	sec := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	return spawnResult{sec(r.Spawn), sec(r.SpawnCPU), sec(r.Pipe), sec(r.PipeCPU)}, nil
}
