package kernel_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
)

// A runner whose task returns runs the next task's first step itself when
// that step is the loop's next callback (chainStep). Nothing of that may
// show: callbacks run in asyncio's order and count per iteration, each task
// is the current task while it runs, a panic or a cancellation before the
// start ends only its own task, and debug mode (which times each callback
// alone) gives the same order.
func TestChainedTaskStepsKeepTheOrder(t *testing.T) {
	for _, debug := range []bool{false, true} {
		l := testkit.NewLoop(t, "epoll", kernel.WithDebug(debug))
		var got []string
		note := func(s string) { got = append(got, s) }
		var b *kernel.Task[int]
		main, err := kernel.CreateTask(l, func(co *kernel.Co) (int, error) {
			lp := co.Loop()
			a, _ := kernel.CreateTask(lp, func(co *kernel.Co) (int, error) {
				note("A")
				lp.CallSoon(func() { note("a-callback") })
				return 1, nil
			})
			b, _ = kernel.CreateTask(lp, func(co *kernel.Co) (int, error) {
				note("B")
				// A task awaiting itself fails at once only if it is the
				// loop's current task (otherwise it waits for the timeout).
				if _, err := kernel.WaitFor(co, kernel.AwaitableOf[int](b), time.Second); !errors.Is(err, kernel.ErrInvalidState) {
					return 0, errors.New("B is not the current task")
				}
				return 2, nil
			})
			lp.CallSoon(func() { note("X") })
			p, _ := kernel.CreateTask(lp, func(co *kernel.Co) (int, error) {
				note("P")
				panic("chained panic")
			})
			c, _ := kernel.CreateTask(lp, func(co *kernel.Co) (int, error) {
				note("C1")
				if err := co.Yield(); err != nil {
					return 0, err
				}
				note("C2")
				return 3, nil
			})
			k, _ := kernel.CreateTask(lp, func(co *kernel.Co) (int, error) {
				note("never")
				return 0, nil
			})
			k.Cancel()
			d, _ := kernel.CreateTask(lp, func(co *kernel.Co) (int, error) {
				note("D")
				return 4, nil
			})
			vals, errs, err := kernel.GatherReturnErrors(co, []kernel.AwaitableOf[int]{a, b, p, c, k, d}...)
			if err != nil {
				return 0, err
			}
			var pe *kernel.PanicError
			if !errors.As(errs[2], &pe) {
				t.Errorf("debug=%v: panicking task: %v, want a *PanicError", debug, errs[2])
			}
			if !errors.Is(errs[4], kernel.ErrCancelled) {
				t.Errorf("debug=%v: task cancelled before its start: %v", debug, errs[4])
			}
			for i, e := range []error{errs[0], errs[1], errs[3], errs[5]} {
				if e != nil {
					t.Errorf("debug=%v: task %d: %v", debug, i, e)
				}
			}
			return vals[0] + vals[1] + vals[3] + vals[5], nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.RunUntilComplete(main); err != nil {
			t.Fatal(err)
		}
		if v, _ := main.Result(); v != 10 {
			t.Errorf("debug=%v: sum %d, want 10", debug, v)
		}
		// One batch runs A, B, X, P, C's first part and D; A's callback
		// and C's second step were scheduled during it, so they wait for
		// the next iteration, in the order they were scheduled.
		want := []string{"A", "B", "X", "P", "C1", "D", "a-callback", "C2"}
		if !slices.Equal(got, want) {
			t.Errorf("debug=%v: ran %v, want %v", debug, got, want)
		}
	}
}
