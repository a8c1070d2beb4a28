package executor_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/executor"
	"github.com/loopkernel/loopkernel/policy"
	"github.com/loopkernel/loopkernel/sdk"
)

// A process pool runs registered functions in worker processes: this
// program re-executed (its main, or TestMain, calls plugin.ServeBundled
// first), so the functions registered from init are there too.
func ExampleNewPool() {
	ctx := context.Background()
	pool, err := executor.NewPool(ctx, executor.PoolOptions{Workers: 2, Queue: 8})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	got, err := upper.Call(ctx, pool, "hello")
	fmt.Println(got, err)
	// Output: HELLO <nil>
}

var quit = sdk.NewFunc("example.quit", func(_ context.Context, code int) (int, error) {
	os.Exit(code)
	return 0, nil
})

// A worker that dies fails the call it was running and nothing else: the
// error says so, and the pool replaces the worker.
func ExamplePool_crashIsolation() {
	ctx := context.Background()
	pool, err := executor.NewPool(ctx, executor.PoolOptions{Workers: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	_, err = quit.Call(ctx, pool, 3)
	fmt.Println("worker died:", errors.Is(err, sdk.ErrBackendDied))
	got, err := upper.Call(ctx, pool, "still here")
	fmt.Println(got, err)
	// Output:
	// worker died: true
	// STILL HERE <nil>
}

// `--executor process` (or Policy.Executor) makes the pool a loop's
// function executor; kernel.CallFunc is then run_in_executor on a
// ProcessPoolExecutor.
func ExamplePool_callFunc() {
	pol, err := policy.Choose(policy.Flags{Policy: "epoll", Executor: executor.ProcessName})
	if err != nil {
		fmt.Println(err)
		return
	}
	loop, err := pol.NewEventLoop()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer loop.Close()
	task, _ := kernel.CreateTask(loop, func(co *kernel.Co) (string, error) {
		f, err := kernel.CallFunc(loop, upper, "from a worker")
		if err != nil {
			return "", err
		}
		return f.Await(co)
	})
	err = loop.RunUntilComplete(task)
	got, _ := task.Result()
	fmt.Println(got, err)
	// Output: FROM A WORKER <nil>
}

// A policy makes a process pool every new loop's function executor. The
// pool's options come with a name of their own in sdk.Executors (register
// it from init, as policies are); the policy names it.
func ExamplePool_policy() {
	if _, err := policy.Lookup("epoll-two-workers"); errors.Is(err, policy.ErrUnknownPolicy) {
		sdk.Executors.Register("process-two", func() (sdk.Executor, error) {
			return executor.NewPool(context.Background(), executor.PoolOptions{Workers: 2, Queue: 64, MaxTasksPerWorker: 1000})
		})
		policy.Register(policy.Policy{
			Name:        "epoll-two-workers",
			Description: "epoll, registered functions on a pool of two worker processes",
			Selector:    "epoll",
			Executor:    "process-two",
		})
	}
	p, _ := policy.Lookup("epoll-two-workers")
	loop, err := p.NewEventLoop()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer loop.Close()
	pool := loop.FuncExecutor().(*executor.Pool)
	fmt.Println(p.Name+":", pool.Workers(), "workers")
	// Output: epoll-two-workers: 2 workers
}

var waitForCancel = sdk.NewFunc("example.wait", func(ctx context.Context, _ int) (int, error) {
	<-ctx.Done()
	return 0, ctx.Err()
})

// With a queue bound and FailFast, a call that finds every worker busy and
// the queue full is refused at once instead of waiting for room.
func ExampleErrQueueFull() {
	pool, err := executor.NewPool(context.Background(), executor.PoolOptions{Workers: 1, Queue: 1, FailFast: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 2 { // one runs, one waits in the queue
		go func() {
			for {
				_, err := waitForCancel.Call(ctx, pool, 0)
				if !errors.Is(err, executor.ErrQueueFull) {
					return
				}
				time.Sleep(time.Millisecond) // the probe below held the slot
			}
		}()
	}
	for {
		probe, stop := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := upper.Call(probe, pool, "probe")
		stop()
		if errors.Is(err, executor.ErrQueueFull) {
			fmt.Println("refused:", err != nil)
			return
		}
		time.Sleep(time.Millisecond) // the two have not both been admitted yet
	}
	// Output: refused: true
}
