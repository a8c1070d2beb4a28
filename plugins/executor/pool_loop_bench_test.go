package executor_test

import (
	"context"
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
}
