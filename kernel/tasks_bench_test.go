package kernel_test

import (
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/bench"
	"github.com/loopkernel/loopkernel/kernel"
)

// The toolkit's workloads live in package bench, as the loop's do, so that
// `loopkernel bench loop` runs exactly these next to asyncio and uvloop.

func BenchmarkGather1000(b *testing.B)     { bench.Gather(b, bench.EpollLoop) }
func BenchmarkQueuePutGet(b *testing.B)    { bench.QueuePutGet(b, bench.EpollLoop) }
func BenchmarkLockContention(b *testing.B) { bench.LockContention(b, bench.EpollLoop) }
func BenchmarkWaitFor(b *testing.B)        { bench.WaitForOverhead(b, bench.EpollLoop) }

// TestWaitForAllocatesNoMoreThanAwait: WaitFor's deadline is a recycled
// timer handle and its expiry callback is made once per task, so awaiting
// a future under WaitFor allocates exactly what a bare await of it does,
// beyond that callback and the task part that holds it: what 90 more
// awaits cost is compared.
func TestWaitForAllocatesNoMoreThanAwait(t *testing.T) {
	l := bench.NewLoop(t, nil)
	run := func(timed bool, n int) func() {
		return func() {
			task, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
				for range n {
					f := kernel.CreateFuture[struct{}](l)
					if _, err := l.CallSoon(func() { f.SetResult(struct{}{}) }); err != nil {
						return struct{}{}, err
					}
					var err error
					if timed {
						_, err = kernel.WaitFor(co, f, 10*time.Second)
					} else {
						_, err = f.Await(co)
					}
					if err != nil {
						return struct{}{}, err
					}
				}
				return struct{}{}, nil
			})
			if err != nil {
				t.Fatalf("create task: %v", err)
			}
			if err := l.RunUntilComplete(task); err != nil {
				t.Fatalf("run: %v", err)
			}
		}
	}
	run(false, 100)() // warm
	run(true, 100)()
	allocs := func(timed bool) float64 {
		return testing.AllocsPerRun(20, run(timed, 100)) - testing.AllocsPerRun(20, run(timed, 10))
	}
	bare, timed := allocs(false), allocs(true)
	if timed != bare {
		t.Errorf("90 more awaits under WaitFor made %.2f more allocations, 90 more bare awaits %.2f: WaitFor allocates", timed, bare)
	}
}
