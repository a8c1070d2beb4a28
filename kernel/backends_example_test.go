package kernel_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/sdk"
)

// shout is registered at package level, so every process of the program
// (a worker re-executing it too) knows it by name.
var shout = sdk.NewFunc("example.shout", func(_ context.Context, s string) (string, error) {
	return strings.ToUpper(s) + "!", nil
})

// CallFunc is run_in_executor for a registered function: the loop's function
// executor (in process here, by default; a policy may put it in a plugin
// process) runs it, and a coroutine awaits the result.
func ExampleCallFunc() {
	loop := newEpollLoop()
	defer loop.Close()
	task, _ := kernel.CreateTask(loop, func(co *kernel.Co) (string, error) {
		f, err := kernel.CallFunc(loop, shout, "hello")
		if err != nil {
			return "", err
		}
		return f.Await(co)
	})
	err := loop.RunUntilComplete(task)
	got, _ := task.Result()
	fmt.Println(got, err)
	// Output: HELLO! <nil>
}
