package kernel_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
)

// A yield whose next loop turn would only resume the yielding task goes on
// at once (skipTurn). Nothing of that may show: a yield still lets every
// callback and task already queued run first, an eagerly started task's
// yield still returns to the code that started it, and a task that only
// yields still lets a timer fire, in normal and debug mode.
func TestYieldShortcutKeepsTheOrder(t *testing.T) {
	for _, debug := range []bool{false, true} {
		l := testkit.NewLoop(t, "epoll", kernel.WithDebug(debug))
		var got []string
		note := func(s string) { got = append(got, s) }
		main, err := kernel.CreateTask(l, func(co *kernel.Co) (int, error) {
			lp := co.Loop()
			lp.CallSoon(func() { note("callback") })
			note("before yield")
			if err := co.Yield(); err != nil {
				return 0, err
			}
			note("after yield")
			// An eager task's yield goes back to its creator, here a
			// plain callback alone on the loop, before the task goes on.
			f := kernel.CreateFuture[struct{}](lp)
			lp.CallSoon(func() {
				lp.SetTaskFactory(kernel.EagerTaskFactory)
				kernel.CreateTask(lp, func(co *kernel.Co) (int, error) {
					note("eager start")
					err := co.Yield()
					note("eager end")
					return 0, err
				})
				lp.SetTaskFactory(nil)
				note("creator goes on")
				f.SetResult(struct{}{})
			})
			if _, err := f.Await(co); err != nil {
				return 0, err
			}
			for range 3 {
				if err := co.Yield(); err != nil {
					return 0, err
				}
			}
			// Alone on the loop, yielding does not starve a timer.
			fired := false
			if _, err := lp.CallLater(2*time.Millisecond, func() { fired = true }); err != nil {
				return 0, err
			}
			deadline := time.Now().Add(5 * time.Second)
			for !fired && time.Now().Before(deadline) {
				if err := co.Yield(); err != nil {
					return 0, err
				}
			}
			if fired {
				note("timer fired")
			}
			return 0, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.RunUntilComplete(main); err != nil {
			t.Fatal(err)
		}
		want := []string{"before yield", "callback", "after yield", "eager start", "creator goes on", "eager end", "timer fired"}
		if !slices.Equal(got, want) {
			t.Errorf("debug=%v: got %q, want %q", debug, got, want)
		}
	}
}

// WaitFor's deadline is armed at the loop's next clock reading (see
// callLaterUnarmed): on a loop kept busy by a task that only yields, and
// so mostly skips its turns, the deadline still passes, and not early.
func TestWaitForTimesOutOnABusyLoop(t *testing.T) {
	l := testkit.NewLoop(t, "epoll")
	main, err := kernel.CreateTask(l, func(co *kernel.Co) (int, error) {
		lp := co.Loop()
		stop := false
		spins := 0
		spinner, err := kernel.CreateTask(lp, func(co *kernel.Co) (int, error) {
			for !stop {
				spins++
				if err := co.Yield(); err != nil {
					return 0, err
				}
			}
			return 0, nil
		})
		if err != nil {
			return 0, err
		}
		never := kernel.CreateFuture[int](lp)
		start := time.Now()
		_, err = kernel.WaitFor(co, never, 20*time.Millisecond)
		took := time.Since(start)
		stop = true
		if !errors.Is(err, kernel.ErrTimeout) {
			t.Errorf("WaitFor returned %v, want ErrTimeout", err)
		}
		if took < 20*time.Millisecond || took > 2*time.Second {
			t.Errorf("WaitFor timed out after %v, want 20ms (and not much later)", took)
		}
		if spins == 0 {
			t.Error("the spinner never ran")
		}
		_, err = spinner.Await(co)
		return 0, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.RunUntilComplete(main); err != nil {
		t.Fatal(err)
	}
}
