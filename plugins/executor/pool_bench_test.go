package executor_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/plugins/executor"
)

// BenchmarkPoolRoundTrip is one small call at a time through a one-worker
// pool (compare sdk/plugin's BenchmarkCallRoundTrip, the same through one
// plugin executor without the pool's envelope and dispatch), with the
// worker's GOMAXPROCS at the default 1 and at Go's default. cpu-µs/op is
// the CPU of this process and the worker together, the worker's start and
// stop included (a loaded machine inflates wall time far more than CPU).
func BenchmarkPoolRoundTrip(b *testing.B) {
	for _, procs := range []int{1, -1} {
		b.Run(fmt.Sprintf("worker-procs=%d", procs), func(b *testing.B) {
			c0, w0 := cpuNow(), wakeups()
			p, err := executor.NewPool(context.Background(), executor.PoolOptions{Workers: 1, WorkerProcs: procs})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := double.Call(ctx, p, 1); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			p.Close()
			b.ReportMetric(float64((cpuNow()-c0).Microseconds())/float64(b.N), "cpu-µs/op")
			b.ReportMetric(float64(wakeups()-w0)/float64(b.N), "sleeps/op")
		})
	}
}

// wakeups counts the voluntary context switches (a thread that slept and
// had to be woken) of this process and its reaped children: the measure of
// hand-offs between threads, which load does not change.
func wakeups() int64 {
	var self, kids unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &self)
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &kids)
	return self.Nvcsw + kids.Nvcsw
}

// cpuNow is this process's CPU time and that of its reaped children.
func cpuNow() time.Duration {
	var self, kids unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &self)
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &kids)
	tv := func(t unix.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// BenchmarkPoolEcho echoes a payload through a one-worker pool, through
// shared memory (shm) and through the call-plane socket (socket, which
// stops at 64 MiB).
func BenchmarkPoolEcho(b *testing.B) {
	for _, path := range []struct {
		name      string
		threshold int
	}{{"shm", 0}, {"socket", -1}} {
		p, err := executor.NewPool(context.Background(), executor.PoolOptions{Workers: 1, ShmThreshold: path.threshold})
		if err != nil {
			b.Fatal(err)
		}
		for _, size := range []int{1 << 20, 32 << 20, 100 << 20} {
			if path.threshold < 0 && size > 32<<20 {
				continue
			}
			arg := make([]byte, size)
			b.Run(fmt.Sprintf("%s/%dMiB", path.name, size>>20), func(b *testing.B) {
				b.SetBytes(int64(2 * size))
				for b.Loop() {
					if _, err := p.Call(context.Background(), "executor-test.echo", arg); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		p.Close()
	}
}
