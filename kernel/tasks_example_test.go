package kernel_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/loopkernel/loopkernel/kernel"
)

// run runs body as the main task of a new loop and closes the loop.
func run(body func(co *kernel.Co) error) error {
	loop := newEpollLoop()
	defer loop.Close()
	task, err := kernel.CreateTask(loop, func(co *kernel.Co) (struct{}, error) { return struct{}{}, body(co) })
	if err != nil {
		return err
	}
	return loop.RunUntilComplete(task)
}

// square returns a task that sleeps a little and returns n*n.
func square(co *kernel.Co, n int) *kernel.Task[int] {
	t, err := kernel.CreateTask(co.Loop(), func(co *kernel.Co) (int, error) {
		return kernel.SleepResult(co, time.Duration(5-n)*time.Millisecond, n*n)
	})
	if err != nil {
		panic(err)
	}
	return t
}

// Gather returns the values in argument order, whatever order the tasks
// finish in.
func ExampleGather() {
	err := run(func(co *kernel.Co) error {
		vals, err := kernel.Gather(co, square(co, 1), square(co, 2), square(co, 3))
		fmt.Println(vals, err)
		return err
	})
	fmt.Println(err)
	// Output:
	// [1 4 9] <nil>
	// <nil>
}

// With return_exceptions: each position has a value or an error.
func ExampleGatherReturnErrors() {
	run(func(co *kernel.Co) error {
		bad, _ := kernel.CreateTask(co.Loop(), func(co *kernel.Co) (int, error) { return 0, errors.New("no luck") })
		vals, errs, err := kernel.GatherReturnErrors(co, square(co, 2), bad)
		fmt.Println(vals, errs, err)
		return nil
	})
	// Output: [4 0] [<nil> no luck] <nil>
}

// Wait splits the awaitables into done and pending; it cancels nothing.
func ExampleWait() {
	run(func(co *kernel.Co) error {
		never := kernel.CreateFuture[int](co.Loop())
		slow, _ := kernel.CreateTask(co.Loop(), func(co *kernel.Co) (int, error) { return never.Await(co) })
		fast := square(co, 4)
		done, pending, err := kernel.Wait(co, []*kernel.Task[int]{slow, fast}, kernel.FirstCompleted, kernel.NoTimeout)
		fmt.Println(len(done), done[0] == fast, len(pending), err)
		return nil
	})
	// Output: 1 true 1 <nil>
}

// WaitFor cancels what it waits for when time is up.
func ExampleWaitFor() {
	run(func(co *kernel.Co) error {
		never := kernel.CreateFuture[int](co.Loop())
		_, err := kernel.WaitFor(co, never, time.Millisecond)
		fmt.Println(errors.Is(err, kernel.ErrTimeout), never.Cancelled())
		return nil
	})
	// Output: true true
}

// A timeout scope around several awaits; Reschedule moves its deadline.
func ExampleTimeout() {
	run(func(co *kernel.Co) error {
		err := kernel.Timeout(co, time.Millisecond, func(s *kernel.TimeoutScope) error {
			if err := s.Reschedule(co.Loop().Time() + time.Hour); err != nil {
				return err
			}
			return co.Sleep(2 * time.Millisecond) // finishes: the deadline moved
		})
		fmt.Println("rescheduled:", err)
		err = kernel.Timeout(co, time.Millisecond, func(s *kernel.TimeoutScope) error {
			return co.Sleep(time.Hour)
		})
		fmt.Println("expired:", err, errors.Is(err, kernel.ErrTimeout))
		return nil
	})
	// Output:
	// rescheduled: <nil>
	// expired: timeout scope: deadline passed: timed out true
}

// TimeoutAt takes a deadline on the loop's clock.
func ExampleTimeoutAt() {
	run(func(co *kernel.Co) error {
		when := co.Loop().Time() + time.Millisecond
		err := kernel.TimeoutAt(co, when, func(s *kernel.TimeoutScope) error {
			err := co.Sleep(time.Hour)
			fmt.Println(s.Expired(), s.When() == when)
			return err
		})
		fmt.Println(errors.Is(err, kernel.ErrTimeout))
		return nil
	})
	// Output:
	// true true
	// true
}

// AsCompleted yields the tasks as they finish.
func ExampleAsCompleted() {
	run(func(co *kernel.Co) error {
		// Created in this order, their deadlines are ordered whatever the
		// machine's load: 3 sleeps least, 1 most.
		c, b, a := square(co, 3), square(co, 2), square(co, 1)
		ts := []*kernel.Task[int]{a, b, c}
		for t, err := range kernel.AsCompleted(co, ts, time.Second) {
			if err != nil {
				return err
			}
			v, _ := t.Result()
			fmt.Print(v, " ")
		}
		fmt.Println()
		return nil
	})
	// Output: 9 4 1
}

// Cancelling the task awaiting a shield leaves the shielded task running.
func ExampleShield() {
	loop := newEpollLoop()
	defer loop.Close()
	gate := kernel.CreateFuture[string](loop)
	inner, _ := kernel.CreateTask(loop, func(co *kernel.Co) (string, error) { return gate.Await(co) })
	outer, _ := kernel.CreateTask(loop, func(co *kernel.Co) (string, error) {
		return kernel.Shield[string](inner).Await(co)
	})
	loop.CallLater(time.Millisecond, func() { outer.Cancel() })
	fmt.Println(errors.Is(loop.RunUntilComplete(outer), kernel.ErrCancelled))
	gate.SetResult("survived")
	loop.RunUntilComplete(inner)
	fmt.Println(inner.Result())
	// Output:
	// true
	// survived <nil>
}

// One failing task cancels its siblings; the errors come back joined.
func ExampleRunTaskGroup() {
	run(func(co *kernel.Co) error {
		var slow *kernel.Task[int]
		err := kernel.RunTaskGroup(co, func(tg *kernel.TaskGroup) error {
			slow, _ = kernel.CreateGroupTask(tg, func(co *kernel.Co) (int, error) {
				return kernel.SleepResult(co, time.Hour, 1)
			})
			return tg.Go(func(co *kernel.Co) error {
				if err := co.Yield(); err != nil {
					return err
				}
				return errors.New("disk full")
			})
		})
		var tge *kernel.TaskGroupError
		fmt.Println(errors.As(err, &tge), len(tge.Errs), tge.Errs[0], slow.Cancelled())
		return nil
	})
	// Output: true 1 disk full true
}

// The tasks of a group, with their results.
func ExampleCreateGroupTask() {
	run(func(co *kernel.Co) error {
		var a, b *kernel.Task[int]
		err := kernel.RunTaskGroup(co, func(tg *kernel.TaskGroup) (err error) {
			if a, err = kernel.CreateGroupTask(tg, func(co *kernel.Co) (int, error) { return 1, nil }); err != nil {
				return err
			}
			b, err = kernel.CreateGroupTask(tg, func(co *kernel.Co) (int, error) { return kernel.SleepResult(co, time.Millisecond, 2) })
			return err
		})
		va, _ := a.Result()
		vb, _ := b.Result()
		fmt.Println(va+vb, err)
		return nil
	})
	// Output: 3 <nil>
}

func ExampleSleepResult() {
	run(func(co *kernel.Co) error {
		fmt.Println(kernel.SleepResult(co, time.Millisecond, "done"))
		return nil
	})
	// Output: done <nil>
}

// A task that belongs to a context: cancelling the context, from any
// goroutine, cancels the task.
func ExampleCreateTaskContext() {
	loop := newEpollLoop()
	defer loop.Close()
	ctx, cancel := context.WithCancelCause(context.Background())
	task, _ := kernel.CreateTaskContext(loop, ctx, func(co *kernel.Co) (int, error) {
		go cancel(errors.New("shutting down")) // say, a signal handler
		return 0, co.Sleep(time.Hour)
	})
	err := loop.RunUntilComplete(task)
	fmt.Println(task.Cancelled(), err)
	// Output: true cancelled: shutting down
}

// Cancelling and Uncancel count cancellation requests, as structured
// concurrency needs.
func ExampleTask_Cancelling() {
	loop := newEpollLoop()
	defer loop.Close()
	task, _ := kernel.CreateTask(loop, func(co *kernel.Co) (int, error) { return 0, co.Yield() })
	task.Cancel()
	task.Cancel()
	fmt.Println(task.Cancelling(), task.Uncancel(), task.Uncancel())
	fmt.Println(loop.RunUntilComplete(task))
	// Output:
	// 2 1 0
	// <nil>
}

// A task's error that nobody reads is reported through the exception
// handler, at the latest when the loop closes.
func ExampleLoop_SetExceptionHandler_unretrieved() {
	loop := newEpollLoop()
	loop.SetExceptionHandler(func(_ *kernel.Loop, c kernel.ErrorContext) {
		fmt.Println(c.Message+":", c.Err)
	})
	kernel.CreateTask(loop, func(co *kernel.Co) (int, error) { return 0, errors.New("lost") })
	loop.CallLater(time.Millisecond, loop.Stop)
	loop.RunForever()
	loop.Close()
	// Output: Task exception was never retrieved: lost
}
