package kernel_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
)

// Tasks run on pooled coroutine runners: finished tasks give their runner
// back, and Close ends every runner, idle or suspended in a pending task,
// so no goroutine outlives the loop.
func TestTaskRunnersEndWithTheLoop(t *testing.T) {
	base := runtime.NumGoroutine()
	l := testkit.NewLoop(t, "epoll")
	never := kernel.CreateFuture[int](l)
	main, err := kernel.CreateTask(l, func(co *kernel.Co) (int, error) {
		var aws []kernel.AwaitableOf[int]
		for i := range 500 {
			t, err := kernel.CreateTask(co.Loop(), func(co *kernel.Co) (int, error) {
				if i%2 == 0 {
					return i, co.Yield()
				}
				return i, nil
			})
			if err != nil {
				return 0, err
			}
			aws = append(aws, t)
		}
		// Some tasks stay suspended when the loop closes.
		for range 20 {
			if _, err := kernel.CreateTask(co.Loop(), func(co *kernel.Co) (int, error) { return never.Await(co) }); err != nil {
				return 0, err
			}
		}
		vals, err := kernel.Gather(co, aws...)
		if err != nil {
			return 0, err
		}
		return vals[499], co.Yield()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.RunUntilComplete(main); err != nil {
		t.Fatal(err)
	}
	if v, _ := main.Result(); v != 499 {
		t.Fatalf("gathered %d, want 499", v)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base+2 {
		t.Errorf("%d goroutines after Close, %d before the loop: runners leaked", n, base)
	}
}
