package kernel

import "fmt"

// waitq is the FIFO of waiter futures behind every synchronisation
// primitive and queue. A waiter is a bare futureCore the blocked coroutine
// awaits; waking it is finishing it, which schedules the coroutine's step.
// Cancelling the coroutine cancels its waiter (Task.cancel cancels what the
// task awaits), and the primitive then decides, as asyncio does, whether a
// wake-up already given to it must pass on to the next waiter.
//
// Waiters are allocated only when a coroutine really blocks; the queue's
// slice is reused, so an uncontended primitive allocates nothing.
type waitq struct {
	loop *Loop // bound by the first waiter: a primitive serves one loop
	ws   []*futureCore
}

// add appends a new waiter for co.
func (q *waitq) add(co *Co) (*futureCore, error) {
	if q.loop == nil {
		q.loop = co.loop
	} else if q.loop != co.loop {
		return nil, fmt.Errorf("wait: the primitive is bound to another loop: %w", ErrDifferentLoop)
	}
	w := &futureCore{loop: co.loop}
	q.ws = append(q.ws, w)
	return w, nil
}

// remove takes w out of the queue if it is still there, keeping the order.
func (q *waitq) remove(w *futureCore) {
	for i, x := range q.ws {
		if x == w {
			copy(q.ws[i:], q.ws[i+1:])
			q.ws[len(q.ws)-1] = nil
			q.ws = q.ws[:len(q.ws)-1]
			return
		}
	}
}

// wakeFirst finishes the first waiter if it is not done yet, leaving it in
// the queue (the waiter removes itself when it runs): Lock's wake-up.
func (q *waitq) wakeFirst() {
	if len(q.ws) > 0 && !q.ws[0].done() {
		q.ws[0].finish(nil)
	}
}

// popWake removes waiters from the front until it finishes one that was
// not done yet, and reports whether it did: Queue's wake-up.
func (q *waitq) popWake() bool {
	for len(q.ws) > 0 {
		w := q.ws[0]
		copy(q.ws, q.ws[1:])
		q.ws[len(q.ws)-1] = nil
		q.ws = q.ws[:len(q.ws)-1]
		if !w.done() {
			w.finish(nil)
			return true
		}
	}
	return false
}

// wakeNext finishes the first waiter not done yet, leaving it queued, and
// reports whether there was one: Semaphore's wake-up.
func (q *waitq) wakeNext() bool {
	for _, w := range q.ws {
		if !w.done() {
			w.finish(nil)
			return true
		}
	}
	return false
}

// wakeN finishes up to n waiters not done yet, in order (n < 0: all).
func (q *waitq) wakeN(n int) {
	for _, w := range q.ws {
		if n == 0 {
			return
		}
		if !w.done() {
			w.finish(nil)
			n--
		}
	}
}

// live reports whether some waiter is not cancelled.
func (q *waitq) live() bool {
	for _, w := range q.ws {
		if w.state != cancelled {
			return true
		}
	}
	return false
}

// wait parks co on a new waiter and takes the waiter out of the queue once
// co resumes. It returns the waiter, so the caller can tell a wake-up
// (finished) from a cancellation of the waiter itself, and the await's error.
func (q *waitq) wait(co *Co) (*futureCore, error) {
	w, err := q.add(co)
	if err != nil {
		return nil, err
	}
	err = awaitCore(co, w)
	q.remove(w)
	if err != nil && !w.done() {
		// The coroutine was abandoned (the loop closed) without its waiter
		// being cancelled: make sure nobody wakes it later.
		w.state, w.err = cancelled, err
	}
	return w, err
}

// awaitCore awaits one of the toolkit's own waiters. co.await reports only
// what interrupted the suspension; a waiter cancelled by the task's
// cancellation (Task.Cancel cancels what the task awaits) carries the
// *CancelledError in its own outcome, as a Future's does for Await.
func awaitCore(co *Co, w *futureCore) error {
	if err := co.await(w); err != nil {
		return err
	}
	if w.state == cancelled {
		return w.err
	}
	return nil
}
