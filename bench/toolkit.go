package bench

import (
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/kernel"
)

// The task toolkit's workloads (issue 11): Gather, Queue, Lock and WaitFor,
// each with its Python twin in loop_peers.py.

const (
	// GatherTasks is how many tasks one gather op waits for.
	GatherTasks = 1000
	// QueueSize bounds the queue of the queue workload, so that producer and
	// consumer both block and hand over in batches, as a pipeline does.
	QueueSize = 64
	// LockTasks is how many tasks contend for the lock.
	LockTasks = 10
)

func init() {
	Workloads = append(Workloads,
		Workload{"gather", "Gather of 1000 new tasks (one op = the whole gather)", Gather},
		Workload{"queue", "one item through a Queue(64) from a producer task to a consumer task", QueuePutGet},
		Workload{"lock", "Lock acquire+release, 10 tasks contending, each holding it across a yield", LockContention},
		Workload{"wait_for", "WaitFor(future, 10 s) that a callback resolves (compare task_await)", WaitForOverhead},
	)
}

// runMain runs body as one task on a loop from newLoop, timing only the run.
func runMain(b *testing.B, newLoop NewLoopFunc, body func(co *kernel.Co) error) {
	l := NewLoop(b, newLoop)
	task, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) { return struct{}{}, body(co) })
	if err != nil {
		b.Fatalf("create task: %v", err)
	}
	measure(b, func() { err = l.RunUntilComplete(task) })
	if err != nil {
		b.Fatalf("task: %v", err)
	}
}

// Gather measures creating GatherTasks tasks that each return their index
// and gathering them. Python twin: await asyncio.gather(*(child(i) for i in
// range(1000))), which wraps each coroutine in a task.
func Gather(b *testing.B, newLoop NewLoopFunc) {
	b.ReportAllocs()
	child := func(i int) func(co *kernel.Co) (int, error) {
		return func(co *kernel.Co) (int, error) { return i, nil }
	}
	children := make([]func(co *kernel.Co) (int, error), GatherTasks)
	for i := range children {
		children[i] = child(i)
	}
	sum := 0
	runMain(b, newLoop, func(co *kernel.Co) error {
		aws := make([]kernel.AwaitableOf[int], GatherTasks)
		for range b.N {
			for i, c := range children {
				t, err := kernel.CreateTask(co.Loop(), c)
				if err != nil {
					return err
				}
				aws[i] = t
			}
			vals, err := kernel.Gather(co, aws...)
			if err != nil {
				return err
			}
			sum += vals[GatherTasks-1]
		}
		return nil
	})
	if want := b.N * (GatherTasks - 1); sum != want {
		b.Fatalf("gathered sum %d, want %d", sum, want)
	}
}

// QueuePutGet measures one item's trip through a bounded queue between two
// tasks. Python twin: asyncio.Queue(64), a producer task putting n items
// and the main task getting them.
func QueuePutGet(b *testing.B, newLoop NewLoopFunc) {
	b.ReportAllocs()
	q := kernel.NewQueue[int](QueueSize)
	n := b.N
	got := 0
	runMain(b, newLoop, func(co *kernel.Co) error {
		prod, err := kernel.CreateTask(co.Loop(), func(co *kernel.Co) (struct{}, error) {
			for i := range n {
				if err := q.Put(co, i); err != nil {
					return struct{}{}, err
				}
			}
			return struct{}{}, nil
		})
		if err != nil {
			return err
		}
		for i := range n {
			v, err := q.Get(co)
			if err != nil {
				return err
			}
			if v != i {
				b.Errorf("got %d, want %d", v, i)
			}
			got++
		}
		_, err = prod.Await(co)
		return err
	})
	if got != n {
		b.Fatalf("got %d items, want %d", got, n)
	}
}

// LockContention measures Lock acquire and release with LockTasks tasks
// contending, each yielding once while it holds the lock, so that every
// acquisition but the first of a turn waits in the queue. Python twin:
// async with lock: await asyncio.sleep(0).
func LockContention(b *testing.B, newLoop NewLoopFunc) {
	b.ReportAllocs()
	var lk kernel.Lock
	n := b.N
	done := 0
	runMain(b, newLoop, func(co *kernel.Co) error {
		ts := make([]kernel.AwaitableOf[struct{}], LockTasks)
		for w := range LockTasks {
			share := n / LockTasks
			if w < n%LockTasks {
				share++
			}
			t, err := kernel.CreateTask(co.Loop(), func(co *kernel.Co) (struct{}, error) {
				for range share {
					if err := lk.Acquire(co); err != nil {
						return struct{}{}, err
					}
					err := co.Yield()
					lk.Release()
					if err != nil {
						return struct{}{}, err
					}
					done++
				}
				return struct{}{}, nil
			})
			if err != nil {
				return err
			}
			ts[w] = t
		}
		_, err := kernel.Gather(co, ts...)
		return err
	})
	if done != n {
		b.Fatalf("%d acquisitions, want %d", done, n)
	}
}

// WaitForOverhead is TaskAwait with the await under WaitFor's timeout: the
// difference between the two is what the timeout scope costs. Python twin:
// await asyncio.wait_for(f, 10).
func WaitForOverhead(b *testing.B, newLoop NewLoopFunc) {
	b.ReportAllocs()
	n := b.N
	done := 0
	runMain(b, newLoop, func(co *kernel.Co) error {
		l := co.Loop()
		for range n {
			f := kernel.CreateFuture[struct{}](l)
			if _, err := l.CallSoon(func() { f.SetResult(struct{}{}) }); err != nil {
				return err
			}
			if _, err := kernel.WaitFor(co, f, 10*time.Second); err != nil {
				return err
			}
			done++
		}
		return nil
	})
	if done != n {
		b.Fatalf("%d waits, want %d", done, n)
	}
}
