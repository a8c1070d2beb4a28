package kernel

import "fmt"

type queueKind uint8

const (
	fifoQueue queueKind = iota
	lifoQueue
	priorityQueue
)

// Queue is asyncio.Queue for coroutines on one loop: FIFO (NewQueue), LIFO
// (NewLifoQueue) or smallest-first (NewPriorityQueue), bounded by maxsize
// (<= 0: unbounded). Put waits while the queue is full and Get while it is
// empty, each served in arrival order; a waiter cancelled after it was woken
// passes the wake-up on, so a cancellation loses no item and no slot.
// TaskDone and Join count items through to their processing, and Shutdown
// (Python 3.13) ends the queue for producers and, once drained or at once,
// for consumers.
//
// Put and Get that need not wait allocate nothing: items live in one ring
// buffer (a slice for LIFO, a binary heap for priority) that grows by
// doubling and is reused.
type Queue[T any] struct {
	kind       queueKind
	maxsize    int
	buf        []T // ring (FIFO), stack (LIFO) or heap (priority)
	head, n    int
	less       func(a, b T) bool
	getters    waitq
	putters    waitq
	unfinished int
	finished   Event
	shutdown   bool
}

// NewQueue returns a FIFO queue holding at most maxsize items (<= 0: no
// limit).
func NewQueue[T any](maxsize int) *Queue[T] { return newQueue[T](fifoQueue, maxsize, nil) }

// NewLifoQueue returns a last-in, first-out queue (asyncio.LifoQueue).
func NewLifoQueue[T any](maxsize int) *Queue[T] { return newQueue[T](lifoQueue, maxsize, nil) }

// NewPriorityQueue returns a queue whose Get returns the smallest item by
// less (asyncio.PriorityQueue, which uses heapq's ordering); items that
// compare equal come out in no particular order.
func NewPriorityQueue[T any](maxsize int, less func(a, b T) bool) *Queue[T] {
	return newQueue(priorityQueue, maxsize, less)
}

func newQueue[T any](kind queueKind, maxsize int, less func(a, b T) bool) *Queue[T] {
	q := &Queue[T]{kind: kind, maxsize: maxsize, less: less}
	q.finished.set = true
	return q
}

// Qsize is the number of items in the queue.
func (q *Queue[T]) Qsize() int { return q.n }

// Maxsize is the bound given at creation (<= 0: none).
func (q *Queue[T]) Maxsize() int { return q.maxsize }

// Empty reports whether the queue holds no item.
func (q *Queue[T]) Empty() bool { return q.n == 0 }

// Full reports whether the queue holds maxsize items (never, if unbounded).
func (q *Queue[T]) Full() bool { return q.maxsize > 0 && q.n >= q.maxsize }

// Put adds v, waiting while the queue is full. After Shutdown it returns
// ErrQueueShutDown, also to putters waiting then.
func (q *Queue[T]) Put(co *Co, v T) error {
	for q.Full() {
		if q.shutdown {
			return fmt.Errorf("queue put: %w", ErrQueueShutDown)
		}
		st, err := q.putters.wait(co)
		if err != nil {
			if !q.Full() && st == finished {
				q.putters.popWake() // pass our wake-up on
			}
			return err
		}
	}
	return q.PutNowait(v)
}

// PutNowait adds v if there is room, else returns ErrQueueFull.
func (q *Queue[T]) PutNowait(v T) error {
	if q.shutdown {
		return fmt.Errorf("queue put: %w", ErrQueueShutDown)
	}
	if q.Full() {
		return fmt.Errorf("queue put: %w", ErrQueueFull)
	}
	q.push(v)
	q.unfinished++
	q.finished.Clear()
	q.getters.popWake()
	return nil
}

// Get removes and returns an item, waiting while the queue is empty. After
// Shutdown it drains what is left and then returns ErrQueueShutDown (at
// once after Shutdown(true)).
func (q *Queue[T]) Get(co *Co) (T, error) {
	for q.n == 0 {
		if q.shutdown {
			var zero T
			return zero, fmt.Errorf("queue get: %w", ErrQueueShutDown)
		}
		st, err := q.getters.wait(co)
		if err != nil {
			if q.n > 0 && st == finished {
				q.getters.popWake()
			}
			var zero T
			return zero, err
		}
	}
	return q.GetNowait()
}

// GetNowait removes and returns an item if there is one, else returns
// ErrQueueEmpty (ErrQueueShutDown once shut down and empty).
func (q *Queue[T]) GetNowait() (T, error) {
	if q.n == 0 {
		var zero T
		if q.shutdown {
			return zero, fmt.Errorf("queue get: %w", ErrQueueShutDown)
		}
		return zero, fmt.Errorf("queue get: %w", ErrQueueEmpty)
	}
	v := q.pop()
	q.putters.popWake()
	return v, nil
}

// TaskDone marks one item taken with Get as processed; when every item put
// has been, Join returns. Calling it more often than items were put returns
// ErrTooManyReleases.
func (q *Queue[T]) TaskDone() error {
	if q.unfinished <= 0 {
		return fmt.Errorf("queue task done: called more times than items were put: %w", ErrTooManyReleases)
	}
	q.unfinished--
	if q.unfinished == 0 {
		q.finished.Set()
	}
	return nil
}

// Join waits until every item put has been marked with TaskDone.
func (q *Queue[T]) Join(co *Co) error {
	if q.unfinished > 0 {
		return q.finished.Wait(co)
	}
	return nil
}

// Shutdown ends the queue (asyncio.Queue.shutdown): every Put and PutNowait
// from now on returns ErrQueueShutDown; Get drains the items left and then
// returns ErrQueueShutDown. With immediate, the items left are dropped (each
// counted as done for Join) and Get fails at once. Waiting putters and
// getters are woken to see it.
func (q *Queue[T]) Shutdown(immediate bool) {
	q.shutdown = true
	if immediate {
		for q.n > 0 {
			q.pop()
			if q.unfinished > 0 {
				q.unfinished--
			}
		}
		clear(q.buf)
		if q.unfinished == 0 {
			q.finished.Set()
		}
	}
	for q.getters.popWake() {
	}
	for q.putters.popWake() {
	}
}

// IsShutdown reports whether Shutdown was called.
func (q *Queue[T]) IsShutdown() bool { return q.shutdown }

func (q *Queue[T]) push(v T) {
	if q.n == len(q.buf) {
		q.grow()
	}
	switch q.kind {
	case fifoQueue:
		i := q.head + q.n
		if i >= len(q.buf) {
			i -= len(q.buf)
		}
		q.buf[i] = v
		q.n++
	case lifoQueue:
		q.buf[q.n] = v
		q.n++
	default:
		q.buf[q.n] = v
		q.n++
		q.up(q.n - 1)
	}
}

func (q *Queue[T]) pop() T {
	var zero T
	var v T
	switch q.kind {
	case fifoQueue:
		v = q.buf[q.head]
		q.buf[q.head] = zero
		q.head++
		if q.head == len(q.buf) {
			q.head = 0
		}
		q.n--
	case lifoQueue:
		q.n--
		v = q.buf[q.n]
		q.buf[q.n] = zero
	default:
		v = q.buf[0]
		q.n--
		q.buf[0] = q.buf[q.n]
		q.buf[q.n] = zero
		q.down(0)
	}
	return v
}

// grow doubles the buffer, unrolling the FIFO ring to start at 0.
func (q *Queue[T]) grow() {
	nb := make([]T, max(8, 2*len(q.buf)))
	if q.kind == fifoQueue {
		k := copy(nb, q.buf[q.head:])
		copy(nb[k:], q.buf[:q.head])
		q.head = 0
	} else {
		copy(nb, q.buf)
	}
	q.buf = nb
}

func (q *Queue[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(q.buf[i], q.buf[p]) {
			return
		}
		q.buf[i], q.buf[p] = q.buf[p], q.buf[i]
		i = p
	}
}

func (q *Queue[T]) down(i int) {
	for {
		l := 2*i + 1
		if l >= q.n {
			return
		}
		m := l
		if r := l + 1; r < q.n && q.less(q.buf[r], q.buf[l]) {
			m = r
		}
		if !q.less(q.buf[m], q.buf[i]) {
			return
		}
		q.buf[i], q.buf[m] = q.buf[m], q.buf[i]
		i = m
	}
}
