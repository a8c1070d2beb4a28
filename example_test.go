package loopkernel_test

import (
	"context"
	"fmt"
	"time"

	"github.com/loopkernel/loopkernel"
	"github.com/loopkernel/loopkernel/kernel"
)

// Run is a program's main: it builds the loop the environment names, runs
// the coroutine, cleans up, and returns the coroutine's result.
func ExampleRun() {
	n, err := loopkernel.Run(context.Background(), func(co *kernel.Co) (int, error) {
		if err := co.Sleep(time.Millisecond); err != nil {
			return 0, err
		}
		return 6 * 7, nil
	})
	fmt.Println(n, err)
	// Output: 42 <nil>
}

// A parent context bounds the whole program: when it ends, the main
// coroutine is cancelled at its await, and the error says why.
func ExampleRun_timeout() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err := loopkernel.Run(ctx, func(co *kernel.Co) (struct{}, error) {
		return struct{}{}, co.Sleep(time.Hour)
	})
	fmt.Println(err)
	// Output: loopkernel.Run: main coroutine cancelled: context deadline exceeded: cancelled: context deadline exceeded
}
