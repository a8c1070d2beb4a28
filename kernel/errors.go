package kernel

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// Sentinel errors of the loop contract. Every error the kernel returns wraps
// one of these (or an OS error) so callers can use errors.Is.
var (
	// ErrClosed: the loop was closed; nothing can be scheduled on it
	// (asyncio: RuntimeError "Event loop is closed").
	ErrClosed = errors.New("event loop is closed")
	// ErrRunning: the loop is already running — nested RunForever or
	// RunUntilComplete, or Close on a running loop.
	ErrRunning = errors.New("event loop is already running")
	// ErrOtherLoopRunning: another loop is running on this goroutine.
	ErrOtherLoopRunning = errors.New("cannot run the event loop while another loop is running")
	// ErrWrongGoroutine: in debug mode, a non-thread-safe call was made from a
	// goroutine other than the one running the loop.
	ErrWrongGoroutine = errors.New("non-thread-safe operation invoked on an event loop other than the current one")
	// ErrStoppedBeforeDone: RunUntilComplete returned because the loop was
	// stopped before the future completed.
	ErrStoppedBeforeDone = errors.New("event loop stopped before future completed")
	// ErrInvalidState: a future operation that its state forbids, such as
	// setting the result twice or reading the result of a pending future.
	ErrInvalidState = errors.New("invalid state")
	// ErrCancelled is what a cancelled future or task reports; every
	// *CancelledError matches it with errors.Is.
	ErrCancelled = errors.New("cancelled")
	// ErrInvalidSignal: a signal number that cannot be handled.
	ErrInvalidSignal = errors.New("invalid signal")
	// ErrInvalidFD: a negative or otherwise unusable file descriptor.
	ErrInvalidFD = errors.New("invalid file descriptor")
	// ErrDifferentLoop: a future or task that belongs to another loop.
	ErrDifferentLoop = errors.New("future belongs to a different loop")
	// ErrNilCallback: a nil function given as a callback; it is refused
	// when it is scheduled (asyncio raises TypeError there) rather than
	// left to panic inside the loop later.
	ErrNilCallback = errors.New("nil callback")
)

// CancelledError is the error of a cancelled future or task. Msg is the
// optional message given to Cancel.
type CancelledError struct{ Msg string }

func (e *CancelledError) Error() string {
	if e.Msg == "" {
		return "cancelled"
	}
	return "cancelled: " + e.Msg
}

// Is makes errors.Is(err, ErrCancelled) true for every CancelledError.
func (e *CancelledError) Is(target error) bool { return target == ErrCancelled }

// PanicError carries a panic recovered from a callback or a task, with the
// stack where it happened. If the panic value was an error, Unwrap returns it.
type PanicError struct {
	Value any
	Stack []byte
}

func newPanicError(v any) *PanicError { return &PanicError{Value: v, Stack: debug.Stack()} }

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap exposes a panicked error value to errors.Is and errors.As.
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}
