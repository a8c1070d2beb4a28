package kernel_test

import (
	"testing"

	"github.com/loopkernel/loopkernel/bench"
	"github.com/loopkernel/loopkernel/kernel"
)

// The primitives' uncontended paths and a queue's non-blocking put and get
// allocate nothing: a coroutine pays for a waiter only when it really
// blocks. Allocation counts are deterministic, so these are tests, not
// benchmarks. (The uncontended paths never touch the Co, hence nil.)
func TestSyncFastPathsAllocateNothing(t *testing.T) {
	var lk kernel.Lock
	sem, _ := kernel.NewSemaphore(1)
	var ev kernel.Event
	q := kernel.NewQueue[int](0)
	pq := kernel.NewPriorityQueue[int](0, func(a, b int) bool { return a < b })
	for i := range 64 { // warm: grow the buffers
		q.PutNowait(i)
		pq.PutNowait(i)
	}
	for range 64 {
		q.GetNowait()
		pq.GetNowait()
		q.TaskDone()
		pq.TaskDone()
	}
	cases := map[string]func(){
		"Lock": func() {
			if err := lk.Acquire(nil); err != nil {
				t.Fatal(err)
			}
			lk.Release()
		},
		"Semaphore": func() {
			if err := sem.Acquire(nil); err != nil {
				t.Fatal(err)
			}
			sem.Release()
		},
		"Event": func() { ev.Set(); ev.Wait(nil); ev.Clear() },
		"Queue": func() {
			for i := range 32 {
				q.PutNowait(i)
			}
			for range 32 {
				q.GetNowait()
				q.TaskDone()
			}
		},
		"PriorityQueue": func() {
			for i := range 32 {
				pq.PutNowait(32 - i)
			}
			for range 32 {
				pq.GetNowait()
				pq.TaskDone()
			}
		},
	}
	for name, fn := range cases {
		if a := testing.AllocsPerRun(100, fn); a != 0 {
			t.Errorf("%s: %.1f allocations per run, want 0", name, a)
		}
	}
}

// TestLockContentionAllocsNothing: a contended Lock's waiters come from the
// loop's pool, so tasks taking turns at a lock allocate nothing per
// acquisition once warm; compared as TestTaskYieldAllocsNothing does, a run
// of 1000 acquisitions against a run of 10.
func TestLockContentionAllocsNothing(t *testing.T) {
	l := bench.NewLoop(t, nil)
	var lk kernel.Lock
	acquired, every := 0, 0
	for range 3 {
		_, err := kernel.CreateTask(l, func(c *kernel.Co) (struct{}, error) {
			for {
				if err := lk.Acquire(c); err != nil {
					return struct{}{}, err
				}
				err := c.Yield()
				lk.Release()
				if err != nil {
					return struct{}{}, err
				}
				acquired++
				if every > 0 && acquired%every == 0 {
					l.Stop()
				}
			}
		})
		if err != nil {
			t.Fatalf("create task: %v", err)
		}
	}
	round := func(n int) func() {
		return func() {
			acquired, every = 0, n
			if err := l.RunForever(); err != nil {
				t.Fatalf("run forever: %v", err)
			}
			if acquired < n {
				t.Fatalf("%d acquisitions in a run, want at least %d", acquired, n)
			}
		}
	}
	many, few := round(1000), round(10)
	many() // warm
	allocsMany := testing.AllocsPerRun(20, many)
	allocsFew := testing.AllocsPerRun(20, few)
	if allocsMany != allocsFew {
		t.Errorf("a run of 1000 acquisitions made %.2f allocations, a run of 10 %.2f: a contended Lock allocates", allocsMany, allocsFew)
	}
}
