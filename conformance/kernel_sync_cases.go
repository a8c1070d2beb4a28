package conformance

import (
	"errors"
	"slices"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/kernel"
)

// Synchronisation primitives and queues: Lock, Event, Semaphore,
// BoundedSemaphore, Condition, Barrier and Queue (FIFO, LIFO, priority),
// with the fairness and cancellation safety CPython's test_locks and
// test_queues pin down: waiters are served in arrival order, and a waiter
// cancelled after it was woken passes the wake-up on instead of losing it.
var kernelSyncCases = []kcase{
	{name: "kernel/sync/lock-fifo", run: kLockFIFO},
	{name: "kernel/sync/lock-no-barging", run: kLockNoBarging},
	{name: "kernel/sync/lock-cancelled-after-wakeup", run: kLockCancelWoken},
	{name: "kernel/sync/lock-cancelled-waiter", run: kLockCancelWaiter},
	{name: "kernel/sync/event", run: kEvent},
	{name: "kernel/sync/semaphore", run: kSemaphore},
	{name: "kernel/sync/semaphore-cancelled-after-wakeup", run: kSemaphoreCancelWoken},
	{name: "kernel/sync/bounded-semaphore", run: kBoundedSemaphore},
	{name: "kernel/sync/condition", run: kCondition},
	{name: "kernel/sync/condition-cancelled-reacquires", run: kConditionCancel},
	{name: "kernel/sync/barrier", run: kBarrier},
	{name: "kernel/sync/barrier-abort-reset", run: kBarrierAbort},
	{name: "kernel/sync/queue-orders", run: kQueueOrders},
	{name: "kernel/sync/queue-blocking", run: kQueueBlocking},
	{name: "kernel/sync/queue-join", run: kQueueJoin},
	{name: "kernel/sync/queue-cancelled-getter", run: kQueueCancelGetter},
	{name: "kernel/sync/queue-cancelled-putter", run: kQueueCancelPutter},
	{name: "kernel/sync/queue-shutdown", run: kQueueShutdown},
	{name: "kernel/sync/other-loop", run: kSyncOtherLoop},
}

// lockUser returns a task that takes lk, records id, yields while holding
// it, and releases it.
func lockUser(k *kt, l *loopFix, lk *kernel.Lock, id int, order *[]int) *kernel.Task[int] {
	return spawn(k, l, func(co *kernel.Co) (int, error) {
		if err := lk.Acquire(co); err != nil {
			return 0, err
		}
		*order = append(*order, id)
		err := co.Yield()
		if rerr := lk.Release(); rerr != nil {
			return 0, rerr
		}
		return id, err
	})
}

func kLockFIFO(k *kt) {
	l := k.newLoop()
	var lk kernel.Lock
	require.ErrorIs(k, lk.Release(), kernel.ErrNotAcquired, "rule: releasing a lock that is not held is an error")
	var order []int
	var ts []*kernel.Task[int]
	for i := range 4 {
		ts = append(ts, lockUser(k, l, &lk, i, &order))
	}
	require.NoError(k, k.runUntil(l, ts[3], "four tasks taking a lock"))
	require.Equal(k, []int{0, 1, 2, 3}, order, "rule: waiters get the lock in arrival order")
	require.False(k, lk.Locked(), "rule: the lock is free once every holder released it")
}

func kLockNoBarging(k *kt) {
	l := k.newLoop()
	var lk kernel.Lock
	var order []int
	a := spawn(k, l, func(co *kernel.Co) (int, error) {
		if err := lk.Acquire(co); err != nil {
			return 0, err
		}
		order = append(order, 1)
		if err := co.Yield(); err != nil { // let b queue
			return 0, err
		}
		lk.Release()
		if err := lk.Acquire(co); err != nil { // at once, without yielding
			return 0, err
		}
		order = append(order, 3)
		return 0, lk.Release()
	})
	b := lockUser(k, l, &lk, 2, &order)
	require.NoError(k, k.runUntil(l, a, "a holder that releases and takes the lock again"))
	require.NoError(k, k.runUntil(l, b, "the waiter"))
	require.Equal(k, []int{1, 2, 3}, order, "rule: a released lock goes to the waiter first; an Acquire right after Release queues behind it")
}

func kLockCancelWoken(k *kt) {
	l := k.newLoop()
	var lk kernel.Lock
	var order []int
	holder := spawn(k, l, func(co *kernel.Co) (int, error) { return 0, lk.Acquire(co) })
	require.NoError(k, k.runUntil(l, holder, "the holder"))
	b := lockUser(k, l, &lk, 2, &order)
	c := lockUser(k, l, &lk, 3, &order)
	k.runOnce(l) // b and c queue
	_, err := l.CallSoon(func() {
		lk.Release() // wakes b ...
		b.Cancel()   // ... which is cancelled before it runs
	})
	k.must(err, "CallSoon")
	require.NoError(k, k.runUntil(l, c, "the second waiter"))
	require.True(k, b.Cancelled())
	require.Equal(k, []int{3}, order, "rule: a waiter cancelled after its wake-up passes the lock on; the wake-up is not lost")
	require.False(k, lk.Locked())
}

func kLockCancelWaiter(k *kt) {
	l := k.newLoop()
	var lk kernel.Lock
	var order []int
	holder := spawn(k, l, func(co *kernel.Co) (int, error) { return 0, lk.Acquire(co) })
	require.NoError(k, k.runUntil(l, holder, "the holder"))
	b := lockUser(k, l, &lk, 2, &order)
	c := lockUser(k, l, &lk, 3, &order)
	k.runOnce(l)
	b.Cancel()
	k.runOnce(l)
	require.True(k, b.Cancelled(), "rule: a task waiting for a lock can be cancelled")
	require.True(k, lk.Locked())
	require.NoError(k, lk.Release())
	require.NoError(k, k.runUntil(l, c, "the remaining waiter"))
	require.Equal(k, []int{3}, order)
}

func kEvent(k *kt) {
	l := k.newLoop()
	var ev kernel.Event
	woken := 0
	var ws []*kernel.Task[int]
	for range 3 {
		ws = append(ws, spawn(k, l, func(co *kernel.Co) (int, error) {
			err := ev.Wait(co)
			woken++
			return 0, err
		}))
	}
	k.runOnce(l)
	require.Equal(k, 0, woken, "rule: Wait blocks while the event is clear")
	ev.Set()
	require.True(k, ev.IsSet())
	require.NoError(k, k.runUntil(l, ws[2], "waiters of a set event"))
	require.Equal(k, 3, woken, "rule: Set wakes every waiter")
	yielded := true
	t := spawn(k, l, func(co *kernel.Co) (int, error) {
		err := ev.Wait(co)
		yielded = false
		return 0, err
	})
	require.NoError(k, k.runUntil(l, t, "waiting on a set event"))
	require.False(k, yielded)
	ev.Clear()
	require.False(k, ev.IsSet(), "rule: Clear resets the event")
	late := spawn(k, l, func(co *kernel.Co) (int, error) { return 0, ev.Wait(co) })
	k.runOnce(l)
	require.False(k, late.Done(), "rule: after Clear, Wait blocks again")
	late.Cancel()
	require.ErrorIs(k, k.runUntil(l, late, "cancelled event waiter"), kernel.ErrCancelled)
}

func kSemaphore(k *kt) {
	l := k.newLoop()
	_, err := kernel.NewSemaphore(-1)
	require.Error(k, err, "rule: a negative initial value is refused")
	sem, err := kernel.NewSemaphore(2)
	require.NoError(k, err)
	in, most := 0, 0
	var order []int
	var ts []*kernel.Task[int]
	for i := range 5 {
		ts = append(ts, spawn(k, l, func(co *kernel.Co) (int, error) {
			if err := sem.Acquire(co); err != nil {
				return 0, err
			}
			order = append(order, i)
			in++
			most = max(most, in)
			err := co.Sleep(time.Millisecond)
			in--
			sem.Release()
			return 0, err
		}))
	}
	for _, t := range ts {
		require.NoError(k, k.runUntil(l, t, "semaphore users"))
	}
	require.Equal(k, 2, most, "rule: at most value holders at once")
	require.Equal(k, []int{0, 1, 2, 3, 4}, order, "rule: waiters acquire in arrival order")
	require.Equal(k, 2, sem.Value())
	require.False(k, sem.Locked())
}

func kSemaphoreCancelWoken(k *kt) {
	l := k.newLoop()
	sem, err := kernel.NewSemaphore(1)
	require.NoError(k, err)
	holder := spawn(k, l, func(co *kernel.Co) (int, error) { return 0, sem.Acquire(co) })
	require.NoError(k, k.runUntil(l, holder, "the holder"))
	got := 0
	user := func() *kernel.Task[int] {
		return spawn(k, l, func(co *kernel.Co) (int, error) {
			if err := sem.Acquire(co); err != nil {
				return 0, err
			}
			got++
			return 0, sem.Release()
		})
	}
	b, c := user(), user()
	k.runOnce(l)
	require.True(k, sem.Locked())
	_, err = l.CallSoon(func() {
		sem.Release()
		b.Cancel()
	})
	k.must(err, "CallSoon")
	require.NoError(k, k.runUntil(l, c, "the second waiter"))
	require.True(k, b.Cancelled())
	require.Equal(k, 1, got, "rule: a waiter cancelled after its wake-up gives its unit to the next")
	require.Equal(k, 1, sem.Value(), "rule: no unit is lost or made up by a cancellation")
}

func kBoundedSemaphore(k *kt) {
	l := k.newLoop()
	sem, err := kernel.NewBoundedSemaphore(1)
	require.NoError(k, err)
	require.ErrorIs(k, sem.Release(), kernel.ErrTooManyReleases, "rule: a bounded semaphore refuses to go above its initial value")
	t := spawn(k, l, func(co *kernel.Co) (int, error) {
		if err := sem.Acquire(co); err != nil {
			return 0, err
		}
		return 0, sem.Release()
	})
	require.NoError(k, k.runUntil(l, t, "bounded semaphore user"))
	require.ErrorIs(k, sem.Release(), kernel.ErrTooManyReleases)
	zero, err := kernel.NewBoundedSemaphore(0)
	require.NoError(k, err)
	require.ErrorIs(k, zero.Release(), kernel.ErrTooManyReleases)
}

func kCondition(k *kt) {
	l := k.newLoop()
	cond := kernel.NewCondition(nil)
	require.ErrorIs(k, cond.Notify(1), kernel.ErrNotAcquired, "rule: Notify needs the lock")
	require.ErrorIs(k, cond.NotifyAll(), kernel.ErrNotAcquired)
	var notLocked error
	k.must(k.mainTask(l, func(co *kernel.Co) error { notLocked = cond.Wait(co); return nil }), "a task")
	require.ErrorIs(k, notLocked, kernel.ErrNotAcquired, "rule: Wait needs the lock")

	var woken []int
	var ws []*kernel.Task[int]
	for i := range 3 {
		ws = append(ws, spawn(k, l, func(co *kernel.Co) (int, error) {
			if err := cond.Acquire(co); err != nil {
				return 0, err
			}
			defer cond.Release()
			if err := cond.Wait(co); err != nil {
				return 0, err
			}
			if !cond.Locked() {
				return 0, errors.New("Wait returned without the lock")
			}
			woken = append(woken, i)
			return i, nil
		}))
	}
	notify := func(all bool) {
		t := spawn(k, l, func(co *kernel.Co) (int, error) {
			if err := cond.Acquire(co); err != nil {
				return 0, err
			}
			defer cond.Release()
			if all {
				return 0, cond.NotifyAll()
			}
			return 0, cond.Notify(1)
		})
		require.NoError(k, k.runUntil(l, t, "notifier"))
		k.runOnce(l)
		k.runOnce(l)
	}
	k.runOnce(l)
	notify(false)
	require.Equal(k, []int{0}, woken, "rule: Notify(1) wakes one waiter, the first")
	notify(true)
	for _, t := range ws {
		require.NoError(k, k.runUntil(l, t, "waiters"))
	}
	require.Equal(k, []int{0, 1, 2}, woken, "rule: NotifyAll wakes the rest, in order")

	ready := false
	pred := spawn(k, l, func(co *kernel.Co) (int, error) {
		if err := cond.Acquire(co); err != nil {
			return 0, err
		}
		defer cond.Release()
		return 0, cond.WaitFor(co, func() bool { return ready })
	})
	k.runOnce(l)
	notify(true)
	require.False(k, pred.Done(), "rule: WaitFor waits again while its predicate is false")
	ready = true
	notify(true)
	require.NoError(k, k.runUntil(l, pred, "WaitFor"))
}

func kConditionCancel(k *kt) {
	l := k.newLoop()
	var lk kernel.Lock
	cond := kernel.NewCondition(&lk)
	var lockedAfterCancel bool
	w := spawn(k, l, func(co *kernel.Co) (int, error) {
		if err := cond.Acquire(co); err != nil {
			return 0, err
		}
		err := cond.Wait(co)
		lockedAfterCancel = lk.Locked()
		cond.Release()
		return 0, err
	})
	k.runOnce(l)
	// Another task holds the lock when w is cancelled: w must wait for it.
	holder := spawn(k, l, func(co *kernel.Co) (int, error) {
		if err := lk.Acquire(co); err != nil {
			return 0, err
		}
		w.Cancel()
		if err := co.Sleep(time.Millisecond); err != nil {
			return 0, err
		}
		return 0, lk.Release()
	})
	require.ErrorIs(k, k.runUntil(l, w, "cancelled condition waiter"), kernel.ErrCancelled,
		"rule: a cancelled Wait returns the CancelledError")
	require.True(k, holder.Done(), "rule: a cancelled Wait returns only once it holds the lock again")
	require.True(k, lockedAfterCancel, "rule: Wait returns holding the lock, even when cancelled")
}

func kBarrier(k *kt) {
	l := k.newLoop()
	_, err := kernel.NewBarrier(0)
	require.Error(k, err, "rule: a barrier needs at least one party")
	b, err := kernel.NewBarrier(3)
	require.NoError(k, err)
	for round := range 2 {
		var idx []int
		party := func() *kernel.Task[int] {
			return spawn(k, l, func(co *kernel.Co) (int, error) {
				i, err := b.Wait(co)
				idx = append(idx, i)
				return i, err
			})
		}
		ts := []*kernel.Task[int]{party(), party()}
		k.runOnce(l)
		k.runOnce(l)
		require.Empty(k, idx, "rule: Wait blocks until every party arrived")
		require.Equal(k, 2, b.NWaiting())
		ts = append(ts, party())
		for _, t := range ts {
			require.NoError(k, k.runUntil(l, t, "barrier parties"))
		}
		slices.Sort(idx)
		require.Equal(k, []int{0, 1, 2}, idx, "rule: each party gets its arrival index (round %d: the barrier is reusable)", round)
	}
	require.Equal(k, 3, b.Parties())
	require.Equal(k, 0, b.NWaiting())
}

func kBarrierAbort(k *kt) {
	l := k.newLoop()
	b, err := kernel.NewBarrier(3)
	require.NoError(k, err)
	w := spawn(k, l, func(co *kernel.Co) (int, error) { return b.Wait(co) })
	k.runOnce(l)
	k.runOnce(l)
	require.Equal(k, 1, b.NWaiting())
	k.must(k.mainTask(l, func(co *kernel.Co) error { return b.Abort(co) }), "a task")
	require.ErrorIs(k, k.runUntil(l, w, "waiter of an aborted barrier"), kernel.ErrBrokenBarrier,
		"rule: Abort breaks the barrier for the parties waiting")
	require.True(k, b.Broken())
	late := spawn(k, l, func(co *kernel.Co) (int, error) { return b.Wait(co) })
	require.ErrorIs(k, k.runUntil(l, late, "Wait on a broken barrier"), kernel.ErrBrokenBarrier,
		"rule: Wait on a broken barrier fails at once")
	k.must(k.mainTask(l, func(co *kernel.Co) error { return b.Reset(co) }), "a task")
	require.False(k, b.Broken(), "rule: Reset mends a broken barrier")

	w2 := spawn(k, l, func(co *kernel.Co) (int, error) { return b.Wait(co) })
	k.runOnce(l)
	k.runOnce(l)
	k.must(k.mainTask(l, func(co *kernel.Co) error { return b.Reset(co) }), "a task")
	require.ErrorIs(k, k.runUntil(l, w2, "waiter of a reset barrier"), kernel.ErrBrokenBarrier,
		"rule: Reset breaks the round in progress")
	var ts []*kernel.Task[int]
	for range 3 {
		ts = append(ts, spawn(k, l, func(co *kernel.Co) (int, error) { return b.Wait(co) }))
	}
	for _, t := range ts {
		require.NoError(k, k.runUntil(l, t, "a full round after Reset"), "rule: after Reset the barrier fills again")
	}
}

func kQueueOrders(k *kt) {
	fifo := kernel.NewQueue[int](3)
	lifo := kernel.NewLifoQueue[int](0)
	prio := kernel.NewPriorityQueue[int](0, func(a, b int) bool { return a < b })
	in := []int{5, 1, 4}
	for _, v := range in {
		require.NoError(k, fifo.PutNowait(v))
		require.NoError(k, lifo.PutNowait(v))
		require.NoError(k, prio.PutNowait(v))
	}
	require.True(k, fifo.Full())
	require.Equal(k, 3, fifo.Qsize())
	require.Equal(k, 3, fifo.Maxsize())
	require.ErrorIs(k, fifo.PutNowait(9), kernel.ErrQueueFull, "rule: PutNowait on a full queue is ErrQueueFull")
	require.False(k, lifo.Full(), "rule: a queue with maxsize <= 0 is never full")
	drain := func(q *kernel.Queue[int]) []int {
		var out []int
		for !q.Empty() {
			v, err := q.GetNowait()
			require.NoError(k, err)
			out = append(out, v)
		}
		_, err := q.GetNowait()
		require.ErrorIs(k, err, kernel.ErrQueueEmpty, "rule: GetNowait on an empty queue is ErrQueueEmpty")
		return out
	}
	require.Equal(k, []int{5, 1, 4}, drain(fifo), "rule: Queue is first in, first out")
	require.Equal(k, []int{4, 1, 5}, drain(lifo), "rule: LifoQueue is last in, first out")
	require.Equal(k, []int{1, 4, 5}, drain(prio), "rule: PriorityQueue returns the smallest first")

	// The ring buffer wraps and grows without reordering.
	q := kernel.NewQueue[int](0)
	next, want := 0, 0
	for range 50 {
		for range 7 {
			require.NoError(k, q.PutNowait(next))
			next++
		}
		for range 5 {
			v, err := q.GetNowait()
			require.NoError(k, err)
			require.Equal(k, want, v, "rule: FIFO order survives the buffer growing and wrapping")
			want++
		}
	}
}

func kQueueBlocking(k *kt) {
	l := k.newLoop()
	q := kernel.NewQueue[int](1)
	var got []int
	// Two getters wait first; they are served in arrival order.
	g1 := spawn(k, l, func(co *kernel.Co) (int, error) { return q.Get(co) })
	g2 := spawn(k, l, func(co *kernel.Co) (int, error) { return q.Get(co) })
	k.runOnce(l)
	producer := spawn(k, l, func(co *kernel.Co) (int, error) {
		for i := range 4 {
			if err := q.Put(co, i); err != nil {
				return 0, err
			}
		}
		return 0, nil
	})
	require.NoError(k, k.runUntil(l, g2, "getters"))
	v1, _ := g1.Result()
	v2, _ := g2.Result()
	require.Equal(k, []int{0, 1}, []int{v1, v2}, "rule: blocked getters are served in arrival order")
	require.False(k, producer.Done(), "rule: Put waits while the queue is full")
	consumer := spawn(k, l, func(co *kernel.Co) (int, error) {
		for range 2 {
			v, err := q.Get(co)
			if err != nil {
				return 0, err
			}
			got = append(got, v)
		}
		return 0, nil
	})
	require.NoError(k, k.runUntil(l, consumer, "consumer"))
	require.NoError(k, k.runUntil(l, producer, "producer"))
	require.Equal(k, []int{2, 3}, got)
}

func kQueueJoin(k *kt) {
	l := k.newLoop()
	q := kernel.NewQueue[string](0)
	require.ErrorIs(k, q.TaskDone(), kernel.ErrTooManyReleases, "rule: TaskDone without an item is an error")
	for _, s := range []string{"a", "b"} {
		require.NoError(k, q.PutNowait(s))
	}
	joined := spawn(k, l, func(co *kernel.Co) (int, error) { return 0, q.Join(co) })
	worker := spawn(k, l, func(co *kernel.Co) (int, error) {
		for range 2 {
			if _, err := q.Get(co); err != nil {
				return 0, err
			}
			if err := co.Yield(); err != nil {
				return 0, err
			}
			if joined.Done() {
				return 0, errors.New("Join returned before every item was done")
			}
			if err := q.TaskDone(); err != nil {
				return 0, err
			}
		}
		return 0, nil
	})
	require.NoError(k, k.runUntil(l, worker, "worker"))
	require.NoError(k, k.runUntil(l, joined, "Join"), "rule: Join returns once TaskDone was called for every item")
	require.ErrorIs(k, q.TaskDone(), kernel.ErrTooManyReleases)
	k.must(k.mainTask(l, func(co *kernel.Co) error { return q.Join(co) }), "Join of a finished queue")
}

func kQueueCancelGetter(k *kt) {
	l := k.newLoop()
	q := kernel.NewQueue[int](0)
	g1 := spawn(k, l, func(co *kernel.Co) (int, error) { return q.Get(co) })
	g2 := spawn(k, l, func(co *kernel.Co) (int, error) { return q.Get(co) })
	k.runOnce(l)
	_, err := l.CallSoon(func() {
		q.PutNowait(7) // wakes g1 ...
		g1.Cancel()    // ... which is cancelled before it runs
	})
	k.must(err, "CallSoon")
	require.NoError(k, k.runUntil(l, g2, "second getter"))
	require.True(k, g1.Cancelled())
	v, _ := g2.Result()
	require.Equal(k, 7, v, "rule: a getter cancelled after its wake-up passes it on; the item is not lost")

	// A getter cancelled while it waits leaves nothing behind.
	g3 := spawn(k, l, func(co *kernel.Co) (int, error) { return q.Get(co) })
	k.runOnce(l)
	g3.Cancel()
	k.runOnce(l)
	require.True(k, g3.Cancelled())
	require.NoError(k, q.PutNowait(8))
	v, err = q.GetNowait()
	require.NoError(k, err)
	require.Equal(k, 8, v)
}

func kQueueCancelPutter(k *kt) {
	l := k.newLoop()
	q := kernel.NewQueue[int](1)
	require.NoError(k, q.PutNowait(0))
	p1 := spawn(k, l, func(co *kernel.Co) (int, error) { return 0, q.Put(co, 1) })
	p2 := spawn(k, l, func(co *kernel.Co) (int, error) { return 0, q.Put(co, 2) })
	k.runOnce(l)
	_, err := l.CallSoon(func() {
		q.GetNowait() // frees a slot, wakes p1 ...
		p1.Cancel()   // ... which is cancelled before it runs
	})
	k.must(err, "CallSoon")
	require.NoError(k, k.runUntil(l, p2, "second putter"), "rule: a putter cancelled after its wake-up passes the free slot on")
	require.True(k, p1.Cancelled())
	v, err := q.GetNowait()
	require.NoError(k, err)
	require.Equal(k, 2, v)
	require.True(k, q.Empty())
}

func kQueueShutdown(k *kt) {
	l := k.newLoop()
	q := kernel.NewQueue[int](1)
	getter := spawn(k, l, func(co *kernel.Co) (int, error) { return q.Get(co) })
	k.runOnce(l)
	q.Shutdown(false)
	require.ErrorIs(k, k.runUntil(l, getter, "getter of a shut-down queue"), kernel.ErrQueueShutDown,
		"rule: Shutdown wakes blocked getters of an empty queue with ErrQueueShutDown")
	require.True(k, q.IsShutdown())
	require.ErrorIs(k, q.PutNowait(1), kernel.ErrQueueShutDown, "rule: nothing can be put after Shutdown")

	q2 := kernel.NewQueue[int](1)
	require.NoError(k, q2.PutNowait(1))
	putter := spawn(k, l, func(co *kernel.Co) (int, error) { return 0, q2.Put(co, 2) })
	k.runOnce(l)
	q2.Shutdown(false)
	require.ErrorIs(k, k.runUntil(l, putter, "putter of a shut-down queue"), kernel.ErrQueueShutDown,
		"rule: Shutdown wakes blocked putters with ErrQueueShutDown")
	var got int
	var after error
	k.must(k.mainTask(l, func(co *kernel.Co) (err error) {
		if got, err = q2.Get(co); err != nil {
			return err
		}
		_, after = q2.Get(co)
		return nil
	}), "drain")
	require.Equal(k, 1, got, "rule: after Shutdown, Get still drains the items left")
	require.ErrorIs(k, after, kernel.ErrQueueShutDown, "rule: Get on a shut-down, empty queue is ErrQueueShutDown")

	q3 := kernel.NewQueue[int](0)
	require.NoError(k, q3.PutNowait(1))
	require.NoError(k, q3.PutNowait(2))
	q3.Shutdown(true)
	_, err := q3.GetNowait()
	require.ErrorIs(k, err, kernel.ErrQueueShutDown, "rule: Shutdown(immediate) drops the items left")
	k.must(k.mainTask(l, func(co *kernel.Co) error { return q3.Join(co) }), "Join after an immediate shutdown")
}

func kSyncOtherLoop(k *kt) {
	l1, l2 := k.newLoop(), k.newLoop()
	var ev kernel.Event
	w := spawn(k, l1, func(co *kernel.Co) (int, error) { return 0, ev.Wait(co) })
	k.runOnce(l1)
	var err2 error
	k.must(k.mainTask(l2, func(co *kernel.Co) error { err2 = ev.Wait(co); return nil }), "a task on the other loop")
	require.ErrorIs(k, err2, kernel.ErrDifferentLoop, "rule: a primitive serves the loop it was first used on")
	ev.Set()
	require.NoError(k, k.runUntil(l1, w, "the first loop's waiter"))
}
