package kernel_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/loopkernel/loopkernel/kernel"
)

// A producer and two workers; Join waits until every item is processed.
func ExampleQueue() {
	run(func(co *kernel.Co) error {
		q := kernel.NewQueue[int](2)
		sum := 0
		for range 2 {
			kernel.CreateTask(co.Loop(), func(co *kernel.Co) (int, error) {
				for {
					v, err := q.Get(co)
					if errors.Is(err, kernel.ErrQueueShutDown) {
						return 0, nil // the end of the work
					} else if err != nil {
						return 0, err
					}
					sum += v
					q.TaskDone()
				}
			})
		}
		for i := 1; i <= 10; i++ {
			if err := q.Put(co, i); err != nil {
				return err
			}
		}
		err := q.Join(co)
		q.Shutdown(false)
		fmt.Println(sum, err)
		return nil
	})
	// Output: 55 <nil>
}

func ExampleNewPriorityQueue() {
	q := kernel.NewPriorityQueue[string](0, func(a, b string) bool { return a < b })
	for _, s := range []string{"pear", "apple", "fig"} {
		q.PutNowait(s)
	}
	for !q.Empty() {
		v, _ := q.GetNowait()
		fmt.Print(v, " ")
	}
	fmt.Println()
	// Output: apple fig pear
}

func ExampleNewLifoQueue() {
	q := kernel.NewLifoQueue[int](0)
	for i := range 3 {
		q.PutNowait(i)
	}
	v, _ := q.GetNowait()
	_, err := kernel.NewQueue[int](1).GetNowait()
	fmt.Println(v, err)
	// Output: 2 queue get: queue is empty
}

// Tasks take the lock in the order they asked for it.
func ExampleLock() {
	run(func(co *kernel.Co) error {
		var mu kernel.Lock
		var order []int
		var ts []kernel.AwaitableOf[int]
		for i := range 3 {
			t, _ := kernel.CreateTask(co.Loop(), func(co *kernel.Co) (int, error) {
				if err := mu.Acquire(co); err != nil {
					return 0, err
				}
				defer mu.Release()
				order = append(order, i)
				return i, co.Sleep(time.Millisecond)
			})
			ts = append(ts, t)
		}
		_, err := kernel.Gather(co, ts...)
		fmt.Println(order, err)
		return nil
	})
	// Output: [0 1 2] <nil>
}

func ExampleEvent() {
	run(func(co *kernel.Co) error {
		var ready kernel.Event
		co.Loop().CallLater(time.Millisecond, ready.Set)
		err := ready.Wait(co)
		fmt.Println(ready.IsSet(), err)
		return nil
	})
	// Output: true <nil>
}

// At most two tasks hold the semaphore at once.
func ExampleSemaphore() {
	run(func(co *kernel.Co) error {
		sem, _ := kernel.NewSemaphore(2)
		in, most := 0, 0
		var ts []kernel.AwaitableOf[int]
		for range 5 {
			t, _ := kernel.CreateTask(co.Loop(), func(co *kernel.Co) (int, error) {
				if err := sem.Acquire(co); err != nil {
					return 0, err
				}
				defer sem.Release()
				in++
				most = max(most, in)
				err := co.Sleep(time.Millisecond)
				in--
				return 0, err
			})
			ts = append(ts, t)
		}
		_, err := kernel.Gather(co, ts...)
		fmt.Println(most, err)
		return nil
	})
	// Output: 2 <nil>
}

func ExampleNewBoundedSemaphore() {
	sem, _ := kernel.NewBoundedSemaphore(1)
	fmt.Println(sem.Release())
	// Output: release: bounded semaphore: released too many times
}

// A consumer waits, holding the condition's lock around its check, until a
// producer changes the state and notifies.
func ExampleCondition() {
	run(func(co *kernel.Co) error {
		cond := kernel.NewCondition(nil)
		var items []string
		consumer, _ := kernel.CreateTask(co.Loop(), func(co *kernel.Co) (string, error) {
			if err := cond.Acquire(co); err != nil {
				return "", err
			}
			defer cond.Release()
			if err := cond.WaitFor(co, func() bool { return len(items) > 0 }); err != nil {
				return "", err
			}
			return items[0], nil
		})
		if err := co.Yield(); err != nil {
			return err
		}
		if err := cond.Acquire(co); err != nil {
			return err
		}
		items = append(items, "parcel")
		cond.NotifyAll()
		cond.Release()
		fmt.Println(consumer.Await(co))
		return nil
	})
	// Output: parcel <nil>
}

// Three tasks meet at a barrier; each gets its arrival index.
func ExampleBarrier() {
	run(func(co *kernel.Co) error {
		b, _ := kernel.NewBarrier(3)
		var ts []kernel.AwaitableOf[int]
		for i := range 3 {
			t, _ := kernel.CreateTask(co.Loop(), func(co *kernel.Co) (int, error) {
				if err := co.Sleep(time.Duration(i) * time.Millisecond); err != nil {
					return 0, err
				}
				return b.Wait(co)
			})
			ts = append(ts, t)
		}
		idx, err := kernel.Gather(co, ts...)
		fmt.Println(idx, err)
		return nil
	})
	// Output: [0 1 2] <nil>
}
