package kernel_test

import (
	"testing"

	"github.com/loopkernel/loopkernel/bench"
	"github.com/loopkernel/loopkernel/kernel"
)

// The workloads live in package bench so that `loopkernel bench loop` runs
// exactly what these benchmarks run; see that package for what each measures
// and bench/loop_peers.py for the Python twins.

func BenchmarkCallSoon(b *testing.B)  { bench.CallSoon(b, bench.EpollLoop) }
func BenchmarkTimers(b *testing.B)    { bench.Timers(b, bench.EpollLoop) }
func BenchmarkTaskAwait(b *testing.B) { bench.TaskAwait(b, bench.EpollLoop) }
func BenchmarkTaskYield(b *testing.B) { bench.TaskYield(b, bench.EpollLoop) }

// TestCallSoonAllocsNothing pins the property the ready queue and the handle
// free list exist for: once the loop is warm, scheduling and running a
// callback allocates nothing. Allocation counts are deterministic, so unlike a
// timing target this can be a test. Starting a run has a fixed cost of its own
// (registering the running loop), so the test compares a run of 1000
// callbacks with a run of one: any allocation per callback shows as a
// difference.
func TestCallSoonAllocsNothing(t *testing.T) {
	l := bench.NewLoop(t, nil)
	ran := 0
	count := func() { ran++ }
	stop := l.Stop
	round := func(n int) func() {
		return func() {
			for range n {
				if _, err := l.CallSoon(count); err != nil {
					t.Fatalf("call soon: %v", err)
				}
			}
			l.CallSoon(stop)
			if err := l.RunForever(); err != nil {
				t.Fatalf("run forever: %v", err)
			}
		}
	}
	many, one := round(1000), round(1)
	many() // warm: grow the ready queue and fill the handle free list
	allocsMany := testing.AllocsPerRun(20, many)
	allocsOne := testing.AllocsPerRun(20, one)
	if allocsMany != allocsOne {
		t.Errorf("a run of 1000 callbacks made %.2f allocations, a run of one %.2f: CallSoon+run allocates", allocsMany, allocsOne)
	}
	if want := 1000*22 + 21; ran != want { // warm-up, 1+20 runs of each
		t.Errorf("ran %d callbacks, want %d", ran, want)
	}
}

// TestTaskYieldAllocsNothing: a task's bare round trip through the loop
// (Yield) reuses its step callback and a recycled handle, so it allocates
// nothing either; compared as above, with runs of 1000 and 10 yields.
func TestTaskYieldAllocsNothing(t *testing.T) {
	l := bench.NewLoop(t, nil)
	rounds, every := 0, 0
	_, err := kernel.CreateTask(l, func(c *kernel.Co) (struct{}, error) {
		for {
			if err := c.Yield(); err != nil {
				return struct{}{}, err
			}
			rounds++
			if rounds%every == 0 {
				l.Stop()
			}
		}
	})
	if err != nil {
		t.Fatalf("create task: %v", err)
	}
	round := func(n int) func() {
		return func() {
			rounds, every = 0, n
			if err := l.RunForever(); err != nil {
				t.Fatalf("run forever: %v", err)
			}
			if rounds != n {
				t.Fatalf("task yielded %d times in a run, want %d", rounds, n)
			}
		}
	}
	many, few := round(1000), round(10)
	many() // warm
	allocsMany := testing.AllocsPerRun(20, many)
	allocsFew := testing.AllocsPerRun(20, few)
	if allocsMany != allocsFew {
		t.Errorf("a run of 1000 yields made %.2f allocations, a run of 10 %.2f: task Yield allocates", allocsMany, allocsFew)
	}
}
