package kernel

import (
	"context"
	"errors"
)

// Errors of the task toolkit and the synchronisation primitives, named after
// the asyncio exceptions they stand for.
var (
	// ErrTimeout: a WaitFor, Timeout scope or AsCompleted ran out of time
	// (asyncio.TimeoutError). It also matches context.DeadlineExceeded, and
	// has a Timeout method as net errors do. It never matches ErrCancelled:
	// a task that returns it has failed, not been cancelled.
	ErrTimeout error = timeoutError{}
	// ErrQueueEmpty: GetNowait on an empty queue (asyncio.QueueEmpty).
	ErrQueueEmpty = errors.New("queue is empty")
	// ErrQueueFull: PutNowait on a full queue (asyncio.QueueFull).
	ErrQueueFull = errors.New("queue is full")
	// ErrQueueShutDown: a put on a queue that was shut down, or a get on one
	// that was shut down and is empty (asyncio.QueueShutDown, Python 3.13).
	ErrQueueShutDown = errors.New("queue is shut down")
	// ErrBrokenBarrier: a Barrier was aborted or reset while a coroutine
	// waited on it (asyncio.BrokenBarrierError).
	ErrBrokenBarrier = errors.New("barrier is broken")
	// ErrNotAcquired: Release of a lock that is not held, or Wait/Notify on a
	// condition whose lock is not held (asyncio's RuntimeError).
	ErrNotAcquired = errors.New("lock is not acquired")
	// ErrTooManyReleases: a BoundedSemaphore released past its initial
	// value, or Queue.TaskDone called more often than items were put
	// (asyncio's ValueError).
	ErrTooManyReleases = errors.New("released too many times")
)

type timeoutError struct{}

func (timeoutError) Error() string { return "timed out" }

// Timeout reports true, as net.Error's does.
func (timeoutError) Timeout() bool { return true }

// Is makes errors.Is(err, context.DeadlineExceeded) hold too.
func (timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }
