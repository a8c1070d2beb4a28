package kernel

import "fmt"

// waitq is the FIFO of waiter futures behind every synchronisation
// primitive and queue. A waiter is a bare futureCore the blocked coroutine
// awaits; waking it is finishing it, which schedules the coroutine's step.
// Cancelling the coroutine cancels its waiter (Task.cancel cancels what the
// task awaits), and the primitive then decides, as asyncio does, whether a
// wake-up already given to it must pass on to the next waiter.
//
// Nothing is allocated per wait: waiters come from the loop's pool and go
// back to it when the coroutine that waited resumes (nothing else keeps a
// waiter then), and the queue's slice is reused, its live part starting at
// head, so that taking the first waiter out (the usual case: the one woken
// first resumes first) moves nothing. A contended Lock went through a
// waiter allocation and a copy of the queue per acquisition before.
type waitq struct {
	loop *Loop // bound by the first waiter: a primitive serves one loop
	ws   []*futureCore
	head int // ws[head:] are the waiters, in order
}

// waiters returns the waiters, in order.
func (q *waitq) waiters() []*futureCore { return q.ws[q.head:] }

// add appends a new waiter for co.
func (q *waitq) add(co *Co) (*futureCore, error) {
	if q.loop == nil {
		q.loop = co.loop
	} else if q.loop != co.loop {
		return nil, fmt.Errorf("wait: the primitive is bound to another loop: %w", ErrDifferentLoop)
	}
	w := co.loop.getWaiter()
	if len(q.ws) == cap(q.ws) && q.head > 0 {
		// Reuse the room the waiters taken from the front left.
		n := copy(q.ws, q.ws[q.head:])
		clear(q.ws[n:])
		q.ws, q.head = q.ws[:n], 0
	}
	q.ws = append(q.ws, w)
	return w, nil
}

// remove takes w out of the queue if it is still there, keeping the order.
func (q *waitq) remove(w *futureCore) {
	if q.head < len(q.ws) && q.ws[q.head] == w {
		q.popFront()
		return
	}
	for i := q.head; i < len(q.ws); i++ {
		if q.ws[i] == w {
			copy(q.ws[i:], q.ws[i+1:])
			q.ws[len(q.ws)-1] = nil
			q.ws = q.ws[:len(q.ws)-1]
			return
		}
	}
}

// popFront removes the first waiter; the queue must not be empty.
func (q *waitq) popFront() *futureCore {
	w := q.ws[q.head]
	q.ws[q.head] = nil
	q.head++
	if q.head == len(q.ws) {
		q.ws, q.head = q.ws[:0], 0
	}
	return w
}

// wakeFirst finishes the first waiter if it is not done yet, leaving it in
// the queue (the waiter removes itself when it runs): Lock's wake-up.
func (q *waitq) wakeFirst() {
	if q.head < len(q.ws) && !q.ws[q.head].done() {
		q.ws[q.head].finish(nil)
	}
}

// popWake removes waiters from the front until it finishes one that was
// not done yet, and reports whether it did: Queue's wake-up.
func (q *waitq) popWake() bool {
	for q.head < len(q.ws) {
		w := q.popFront()
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
	for _, w := range q.waiters() {
		if !w.done() {
			w.finish(nil)
			return true
		}
	}
	return false
}

// wakeN finishes up to n waiters not done yet, in order (n < 0: all).
func (q *waitq) wakeN(n int) {
	for _, w := range q.waiters() {
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
	for _, w := range q.waiters() {
		if w.state != cancelled {
			return true
		}
	}
	return false
}

// wait parks co on a new waiter and takes the waiter out of the queue once
// co resumes. It returns how the waiter ended, so the caller can tell a
// wake-up (finished) from a cancellation of the waiter itself (pending:
// there was no waiter, the primitive belongs to another loop), and the
// await's error. The waiter goes back to the loop's pool: once co has
// resumed and taken it out of the queue nobody refers to it, unless the
// loop was closed under the wait.
func (q *waitq) wait(co *Co) (futureState, error) {
	w, err := q.add(co)
	if err != nil {
		return pending, err
	}
	err = awaitCore(co, w)
	q.remove(w)
	if err != nil && !w.done() {
		// The coroutine was abandoned (the loop closed) without its waiter
		// being cancelled: make sure nobody wakes it later.
		w.state, w.err = cancelled, err
	}
	st := w.state
	if err != errAbandoned {
		co.loop.putWaiter(w)
	}
	return st, err
}

// maxIdleWaiters bounds the loop's pool of waiters.
const maxIdleWaiters = 256

// getWaiter returns a pending waiter for l, from its pool if it has one.
func (l *Loop) getWaiter() *futureCore {
	if n := len(l.taskAux.waiters); n > 0 {
		w := l.taskAux.waiters[n-1]
		l.taskAux.waiters[n-1] = nil
		l.taskAux.waiters = l.taskAux.waiters[:n-1]
		return w
	}
	return &futureCore{loop: l}
}

// putWaiter returns w, which nothing refers to any more, to l's pool.
func (l *Loop) putWaiter(w *futureCore) {
	if len(l.taskAux.waiters) >= maxIdleWaiters {
		return
	}
	*w = futureCore{loop: l}
	l.taskAux.waiters = append(l.taskAux.waiters, w)
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
