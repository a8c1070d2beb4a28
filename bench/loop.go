// Package bench holds the event-loop workloads that both the kernel's
// `go test -bench` benchmarks and `loopkernel bench loop` run, so that the
// numbers printed next to asyncio and uvloop are the numbers `go test`
// reports. bench/loop_peers.py runs the same workloads on Python's loops;
// each Go workload below says what its Python twin does.
//
// Every workload builds its own loop outside the timed region (on the epoll
// selector unless told otherwise), runs b.N operations inside one RunForever
// or RunUntilComplete, and checks afterwards that every operation really
// happened, so a workload that silently did less work fails instead of
// reporting a flattering number.
package bench

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/selector"
)

const (
	// CallSoonBatch is how many callbacks one driver callback schedules before
	// handing back to the loop: large enough that the driver and the loop
	// iteration are noise next to the callbacks, small enough that the ready
	// queue stays in cache.
	CallSoonBatch = 1000
	// TimerBatch is how many timers are outstanding at once.
	TimerBatch = 1000
	// TimerStep spaces the timers' delays: a batch's delays are the multiples
	// of TimerStep below TimerBatch*TimerStep (10 µs), scheduled in a
	// scrambled order so the heap does real ordering work. Scheduling a batch
	// takes longer than that spread in every implementation measured (each
	// CallLater reads the clock), so all are due by the time the loop polls:
	// the workload measures the timer machinery, not the selector's
	// millisecond sleep granularity.
	TimerStep = 10 * time.Nanosecond
)

// Workload is one measured loop operation.
type Workload struct {
	// Name is the key shared with loop_peers.py's JSON.
	Name string
	// What describes one operation, for tables.
	What string
	// Bench runs b.N operations on a loop from newLoop.
	Bench func(b *testing.B, newLoop NewLoopFunc)
}

// NewLoopFunc builds the loop a workload runs on; the workload closes it.
type NewLoopFunc func() (*kernel.Loop, error)

// EpollLoop builds a loop on a fresh in-process epoll selector, the default
// back-end.
func EpollLoop() (*kernel.Loop, error) {
	sel, err := selector.NewEpoll()
	if err != nil {
		return nil, fmt.Errorf("epoll selector: %w", err)
	}
	return kernel.New(sel), nil
}

// Workloads lists the loop workloads in table order.
var Workloads = []Workload{
	{"call_soon", "CallSoon + run one callback", CallSoon},
	{"timer", "CallLater (spread delays) + fire", Timers},
	{"task_await", "task awaits a future a callback resolves", TaskAwait},
	{"task_yield", "task Yield (asyncio.sleep(0)) alone on the loop (mostly skips the turn)", TaskYield},
}

// NewLoop returns a loop from newLoop (EpollLoop if nil), closed when b
// ends.
func NewLoop(b testing.TB, newLoop NewLoopFunc) *kernel.Loop {
	if newLoop == nil {
		newLoop = EpollLoop
	}
	l, err := newLoop()
	if err != nil {
		b.Fatalf("new loop: %v", err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

func run(b *testing.B, l *kernel.Loop) {
	if err := l.RunForever(); err != nil {
		b.Fatalf("run forever: %v", err)
	}
}

// cpuTime is the process's user+system CPU time. The benchmarks report it
// per operation beside the wall-clock ns/op because the machines these run
// on are shared: a neighbour's load stretches wall time, while CPU time
// stays close to what the work itself costs. It includes the garbage
// collector's background work, which is a real cost of an allocating
// workload even when another core absorbs it.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs fn, the timed part of a workload, between b.ResetTimer and
// b.StopTimer and reports its CPU time per operation.
func measure(b *testing.B, fn func()) {
	b.ResetTimer()
	c0 := cpuTime()
	fn()
	cpu := cpuTime() - c0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// CallSoon measures scheduling and running one callback. A driver callback
// schedules CallSoonBatch counting callbacks and then itself, until b.N have
// been scheduled. Python twin: the same driver with loop.call_soon.
func CallSoon(b *testing.B, newLoop NewLoopFunc) {
	b.ReportAllocs()
	l := NewLoop(b, newLoop)
	ran, left := 0, b.N
	count := func() { ran++ }
	stop := l.Stop
	var driver func()
	driver = func() {
		n := min(CallSoonBatch, left)
		left -= n
		for range n {
			l.CallSoon(count)
		}
		if left > 0 {
			l.CallSoon(driver)
		} else {
			l.CallSoon(stop)
		}
	}
	l.CallSoon(driver)
	measure(b, func() { run(b, l) })
	if ran != b.N {
		b.Fatalf("ran %d callbacks, want %d", ran, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "callbacks/s")
}

// timerDelays returns the delays of one timer batch: the multiples of
// TimerStep below TimerBatch*TimerStep in a fixed scrambled order.
func timerDelays() []time.Duration {
	d := make([]time.Duration, TimerBatch)
	for i := range d {
		d[i] = time.Duration(i) * TimerStep
	}
	// A fixed-seed LCG Fisher–Yates shuffle; loop_peers.py uses the same one,
	// so both sides insert in the same order.
	x := uint32(12345)
	for i := len(d) - 1; i > 0; i-- {
		x = x*1103515245 + 12345
		j := int((x >> 16) % uint32(i+1))
		d[i], d[j] = d[j], d[i]
	}
	return d
}

// Timers measures scheduling a timer with CallLater and firing it. Batches
// of TimerBatch timers with spread delays (see TimerStep) are scheduled; the
// last to fire schedules the next batch. Python twin: loop.call_later.
func Timers(b *testing.B, newLoop NewLoopFunc) {
	b.ReportAllocs()
	l := NewLoop(b, newLoop)
	delays := timerDelays()
	fired, left, want := 0, b.N, 0
	var schedule func()
	fire := func() {
		fired++
		if fired < want {
			return
		}
		if left > 0 {
			schedule()
		} else {
			l.Stop()
		}
	}
	schedule = func() {
		n := min(TimerBatch, left)
		left -= n
		want += n
		for i := range n {
			if _, err := l.CallLater(delays[i], fire); err != nil {
				b.Fatalf("call later: %v", err)
			}
		}
	}
	l.CallSoon(schedule)
	measure(b, func() { run(b, l) })
	if fired != b.N {
		b.Fatalf("fired %d timers, want %d", fired, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "timers/s")
}

// TaskAwait measures a task's round trip through a future: the task creates
// a future, schedules a callback that resolves it, and awaits it. Python twin:
// f = loop.create_future(); loop.call_soon(f.set_result, None); await f.
func TaskAwait(b *testing.B, newLoop NewLoopFunc) {
	b.ReportAllocs()
	l := NewLoop(b, newLoop)
	n := b.N
	done := 0
	task, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
		for range n {
			f := kernel.CreateFuture[struct{}](l)
			if _, err := l.CallSoon(func() { f.SetResult(struct{}{}) }); err != nil {
				return struct{}{}, err
			}
			if _, err := f.Await(co); err != nil {
				return struct{}{}, err
			}
			done++
		}
		return struct{}{}, nil
	})
	if err != nil {
		b.Fatalf("create task: %v", err)
	}
	measure(b, func() { err = l.RunUntilComplete(task) })
	if err != nil || done != n {
		b.Fatalf("task: %v after %d of %d round trips", err, done, n)
	}
}

// TaskYield measures a task's bare round trip through the loop: Yield, the
// counterpart of await asyncio.sleep(0). The task is alone on the loop, so
// most of its yields take the kernel's shortcut (Loop.skipTurn: the next
// turn would only resume it) and go on without a switch; one in
// busyClockIters (8) still goes round the loop. A yield with other work
// queued always makes the full round trip, which the lock workload shows.
func TaskYield(b *testing.B, newLoop NewLoopFunc) {
	b.ReportAllocs()
	l := NewLoop(b, newLoop)
	n := b.N
	done := 0
	task, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
		for range n {
			if err := co.Yield(); err != nil {
				return struct{}{}, err
			}
			done++
		}
		return struct{}{}, nil
	})
	if err != nil {
		b.Fatalf("create task: %v", err)
	}
	measure(b, func() { err = l.RunUntilComplete(task) })
	if err != nil || done != n {
		b.Fatalf("task: %v after %d of %d yields", err, done, n)
	}
}

// Find returns the workload called name.
func Find(name string) (Workload, error) {
	for _, w := range Workloads {
		if w.Name == name {
			return w, nil
		}
	}
	return Workload{}, fmt.Errorf("bench: unknown workload %q", name)
}
