package kernel_test

import (
	"fmt"

	"github.com/loopkernel/loopkernel/kernel"
)

// A task's done callbacks receive the task. Only its coroutine completes a
// task: unlike a Future it has no SetResult or SetException.
func ExampleTask_AddDoneCallback() {
	loop := newEpollLoop()
	defer loop.Close()

	task, err := kernel.CreateTask(loop, func(co *kernel.Co) (string, error) {
		if err := co.Yield(); err != nil {
			return "", err
		}
		return "ko", nil
	})
	if err != nil {
		panic(err)
	}
	task.AddDoneCallback(func(t *kernel.Task[string]) {
		v, err := t.Result()
		fmt.Println(t.Name() != "", v, err)
	})
	if err := loop.RunUntilComplete(task); err != nil {
		panic(err)
	}
	// Output: true ko <nil>
}
