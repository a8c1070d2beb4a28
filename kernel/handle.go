package kernel

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"time"
)

// handle is the loop's record of one scheduled callback. Handles are pooled
// per loop: when a callback has run, its handle goes back on the loop's free
// list with a new generation, so the Handle values given out for it go stale
// instead of dangling. A cancelled handle is never recycled, which keeps
// Cancelled true for as long as anyone holds the Handle.
type handle struct {
	fn func()
	// run and arg are a kernel callback carried without a closure (fn is
	// nil then): a task's step, a gather's watch on one child. Making a
	// closure per task for these was an allocation per task.
	run  handleRunner
	arg  *futureCore
	ctx  context.Context // optional; a done context skips the callback
	stop func() bool     // unregisters a context.AfterFunc, if any
	loop *Loop
	gen  uint64
	next *handle // free list

	when  time.Duration // timers: deadline on the loop clock
	seq   uint64        // timers: FIFO among equal deadlines
	index int           // timers: position in the heap, -1 when not in it

	cancelled  bool
	persistent bool    // reader/writer/signal handles: run many times, never recycled
	src        uintptr // debug mode: the PC that scheduled the callback
}

// Handle is a callback scheduled with CallSoon or CallSoonThreadsafe
// (asyncio.Handle). The zero Handle refers to nothing.
type Handle struct {
	h   *handle
	gen uint64
}

func (h Handle) live() bool { return h.h != nil && h.h.gen == h.gen }

// Cancel stops the callback from running. Cancelling a callback that has
// already run or been cancelled does nothing. Like asyncio, it is not
// thread-safe: call it on the loop's goroutine.
func (h Handle) Cancel() {
	if h.live() {
		h.h.loop.cancel(h.h)
	}
}

// Cancelled reports whether the callback was cancelled.
func (h Handle) Cancelled() bool { return h.live() && h.h.cancelled }

// String names the callback, for logs and the exception handler.
func (h Handle) String() string {
	if !h.live() {
		return "<Handle finished>"
	}
	return h.h.String()
}

func (h *handle) String() string {
	state := ""
	if h.cancelled {
		state = " cancelled"
	}
	if h.index >= 0 {
		return fmt.Sprintf("<TimerHandle%s when=%v %s>", state, h.when, h.callbackName())
	}
	return fmt.Sprintf("<Handle%s %s>", state, h.callbackName())
}

// handleRunner is a kernel callback that a handle carries as an interface
// value and an argument instead of a closure: scheduling one allocates
// nothing, since the object it runs on exists already.
type handleRunner interface {
	runHandle(arg *futureCore)
	// describe names the callback in logs and the exception handler.
	describe() string
}

// callbackName names the handle's callback, for logs and errors only.
func (h *handle) callbackName() string {
	if h.fn == nil && h.run != nil {
		return h.run.describe()
	}
	return funcName(h.fn)
}

// TimerHandle is a callback scheduled with CallLater or CallAt
// (asyncio.TimerHandle).
type TimerHandle struct {
	Handle
	when time.Duration
}

// When is the time, on the loop clock (Loop.Time), the callback is due.
func (t TimerHandle) When() time.Duration { return t.when }

// funcName describes a callback by its function's name and source position;
// it is only used on error and debug paths.
func funcName(fn func()) string {
	if fn == nil {
		return "<nil>"
	}
	f := runtime.FuncForPC(reflect.ValueOf(fn).Pointer())
	if f == nil {
		return "<unknown>"
	}
	file, line := f.FileLine(f.Entry())
	return fmt.Sprintf("%s (%s:%d)", f.Name(), file, line)
}

// ring is the ready queue: a FIFO of handles in a power-of-two ring that
// grows by doubling and never shrinks, so steady-state pushes allocate nothing.
type ring struct {
	buf  []*handle
	head int
	n    int
}

func (r *ring) push(h *handle) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = h
	r.n++
}

func (r *ring) pop() *handle {
	h := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	return h
}

func (r *ring) grow() {
	size := 2 * len(r.buf)
	if size == 0 {
		size = 256
	}
	buf := make([]*handle, size)
	for i := 0; i < r.n; i++ {
		buf[i] = r.buf[(r.head+i)&(len(r.buf)-1)]
	}
	r.buf, r.head = buf, 0
}

func (r *ring) clear() {
	for r.n > 0 {
		r.pop()
	}
}

// timerHeap is a binary min-heap on (when, seq). It is hand-rolled rather
// than container/heap so that the hot path makes no interface calls, and its
// sifts move a hole rather than swapping: the element being placed is read
// once and written once, and each level costs one move and one index update
// instead of a swap's two.
type timerHeap []*handle

// before orders timers by deadline, then by scheduling order.
func before(a, b *handle) bool {
	return a.when < b.when || a.when == b.when && a.seq < b.seq
}

func (t timerHeap) less(i, j int) bool { return before(t[i], t[j]) }

func (t timerHeap) swap(i, j int) {
	t[i], t[j] = t[j], t[i]
	t[i].index = i
	t[j].index = j
}

func (t *timerHeap) push(h *handle) {
	h.index = len(*t)
	*t = append(*t, h)
	t.up(h.index)
}

func (t *timerHeap) pop() *handle {
	old := *t
	n := len(old) - 1
	old.swap(0, n)
	h := old[n]
	old[n] = nil
	*t = old[:n]
	if n > 0 {
		t.down(0)
	}
	h.index = -1
	return h
}

func (t timerHeap) up(i int) {
	h := t[i]
	for i > 0 {
		p := (i - 1) / 2
		parent := t[p]
		if !before(h, parent) {
			break
		}
		t[i], parent.index = parent, i
		i = p
	}
	t[i], h.index = h, i
}

func (t timerHeap) down(i int) {
	n := len(t)
	h := t[i]
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m, child := l, t[l]
		if r := l + 1; r < n && before(t[r], child) {
			m, child = r, t[r]
		}
		if !before(child, h) {
			break
		}
		t[i], child.index = child, i
		i = m
	}
	t[i], h.index = h, i
}

// remove takes the timer at index i out of the heap.
func (t *timerHeap) remove(i int) {
	old := *t
	n := len(old) - 1
	h := old[i]
	if i != n {
		last := old[n]
		old[i], last.index = last, i
	}
	old[n] = nil
	*t = old[:n]
	if i != n {
		if i > 0 && before(old[i], old[(i-1)/2]) {
			t.up(i)
		} else {
			t.down(i)
		}
	}
	h.index = -1
}

// rebuild drops cancelled timers and restores the heap order.
func (t *timerHeap) rebuild() {
	old := *t
	kept := old[:0]
	for _, h := range old {
		if h.cancelled {
			h.index = -1
			continue
		}
		kept = append(kept, h)
	}
	for i := len(kept); i < len(old); i++ {
		old[i] = nil
	}
	*t = kept
	for i, h := range kept {
		h.index = i
	}
	for i := len(kept)/2 - 1; i >= 0; i-- {
		kept.down(i)
	}
}
