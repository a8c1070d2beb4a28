package executor_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/executor"
	"github.com/loopkernel/loopkernel/plugins/selector"
)

// BenchmarkPoolLoopRoundTrip is BenchmarkPoolRoundTrip's call made from a
// coroutine on a running loop (kernel.CallFunc, asyncio's run_in_executor):
// the loop hands the call to a goroutine, which waits on the worker channel
// and completes the future through the loop's threadsafe queue.
func BenchmarkPoolLoopRoundTrip(b *testing.B) {
	p, err := executor.NewPool(context.Background(), executor.PoolOptions{Workers: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	sel, err := selector.NewEpoll()
	if err != nil {
		b.Fatal(err)
	}
	loop := kernel.New(sel)
	defer loop.Close()
	loop.SetFuncExecutor(p)
	b.ReportAllocs()
	c0, w0 := cpuNow(), wakeups()
	task, err := kernel.CreateTask(loop, func(co *kernel.Co) (struct{}, error) {
		for b.Loop() {
			f, err := kernel.CallFunc(loop, double, 1)
			if err != nil {
				return struct{}{}, err
			}
			if _, err := f.Await(co); err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := loop.RunUntilComplete(task); err != nil {
		b.Fatal(err)
	}
	if _, err := task.Result(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	p.Close() // reaps the worker, whose CPU and sleeps count from then on
	b.ReportMetric(float64((cpuNow()-c0).Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(wakeups()-w0)/float64(b.N), "sleeps/op")
}

// BenchmarkPoolLoopInFlight keeps 64 calls in flight from tasks on one
// loop, on 1 and 2 workers: those that find no idle worker wait on
// goroutines (Pool.Call), the others are started on the loop.
func BenchmarkPoolLoopInFlight(b *testing.B) {
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			p, err := executor.NewPool(context.Background(), executor.PoolOptions{Workers: workers})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			sel, err := selector.NewEpoll()
			if err != nil {
				b.Fatal(err)
			}
			loop := kernel.New(sel)
			defer loop.Close()
			loop.SetFuncExecutor(p)
			left := b.N
			b.ResetTimer()
			var tasks []kernel.AwaitableOf[struct{}]
			for range 64 {
				t, err := kernel.CreateTask(loop, func(co *kernel.Co) (struct{}, error) {
					for left > 0 {
						left--
						f, err := kernel.CallFunc(loop, double, 1)
						if err != nil {
							return struct{}{}, err
						}
						if _, err := f.Await(co); err != nil {
							return struct{}{}, err
						}
					}
					return struct{}{}, nil
				})
				if err != nil {
					b.Fatal(err)
				}
				tasks = append(tasks, t)
			}
			all, err := kernel.CreateTask(loop, func(co *kernel.Co) ([]struct{}, error) { return kernel.Gather(co, tasks...) })
			if err != nil {
				b.Fatal(err)
			}
			if err := loop.RunUntilComplete(all); err != nil {
				b.Fatal(err)
			}
			if _, err := all.Result(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
