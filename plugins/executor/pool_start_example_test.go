package executor_test

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/executor"
	"github.com/loopkernel/loopkernel/plugins/selector"
)

// StartCall sends a call without waiting for it; the caller watches the
// call's descriptor and reads the answer with Poll when it is readable.
// This is what a loop does (kernel.CallFunc, next example); here poll(2)
// stands in for the loop's poller.
func ExamplePool_StartCall() {
	ctx := context.Background()
	pool, err := executor.NewPool(ctx, executor.PoolOptions{Workers: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	arg, _ := upper.Encode("hello")
	call, ok, err := pool.StartCall(ctx, upper.Name(), arg)
	if !ok || err != nil {
		fmt.Println("not started:", err) // no idle worker, or too large: pool.Call instead
		return
	}
	for {
		fds := []unix.PollFd{{Fd: int32(call.Fd()), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
			fmt.Println(err)
			return
		}
		res, err, done := call.Poll()
		if !done {
			continue
		}
		got, _ := upper.Decode(res)
		fmt.Println(got, err)
		return
	}
	// Output: HELLO <nil>
}

// On a loop, kernel.CallFunc starts the call on the loop's goroutine and
// completes the future when the loop sees the answer: no goroutine waits
// on it.
func ExamplePool_StartCall_onALoop() {
	pool, err := executor.NewPool(context.Background(), executor.PoolOptions{Workers: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	sel, err := selector.NewEpoll()
	if err != nil {
		fmt.Println(err)
		return
	}
	loop := kernel.New(sel)
	defer loop.Close()
	loop.SetFuncExecutor(pool)
	task, _ := kernel.CreateTask(loop, func(co *kernel.Co) (string, error) {
		f, err := kernel.CallFunc(loop, upper, "run in executor")
		if err != nil {
			return "", err
		}
		return f.Await(co)
	})
	err = loop.RunUntilComplete(task)
	got, _ := task.Result()
	fmt.Println(got, err)
	// Output: RUN IN EXECUTOR <nil>
}
