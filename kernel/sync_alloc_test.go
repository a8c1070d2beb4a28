package kernel_test

import (
	"testing"

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
