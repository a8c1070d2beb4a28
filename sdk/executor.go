package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// The executor seam: what a back-end implements so that the loop can run
// work off its goroutine, asyncio's run_in_executor, in a form that can cross
// a process boundary. A Go closure cannot leave its process, so an Executor
// runs functions registered by name (RegisterFunc, NewFunc) on arguments
// encoded as bytes, and returns the result encoded the same way. Every
// process that runs this binary registers the same functions from init, so a
// worker that is this program re-executed knows each name the host can send.
//
// The loop's closure executor (kernel.Executor, goroutines in process) stays
// beside this one for work that need not leave the process.

// Executor runs registered functions. It is safe for concurrent use, and the
// kernel calls it off the loop goroutine, so Call may block.
type Executor interface {
	// Call runs the function registered under fn on the encoded argument and
	// returns its encoded result. A function that returned an error (or
	// panicked) yields a *CallError; an unknown name wraps ErrUnknownFunc;
	// a worker that died during the call wraps ErrBackendDied. Cancelling
	// ctx abandons the wait: the function may still run to its end.
	Call(ctx context.Context, fn string, arg []byte) ([]byte, error)
	// Close stops the executor; calls in flight fail, later ones fail with
	// ErrExecutorClosed.
	Close() error
}

// DefaultExecutor is the name of the executor back-end a loop uses when it
// was given none: the one registered under it in Executors (plugins/executor
// registers an in-process goroutine executor there).
const DefaultExecutor = "goroutine"

// RawFunc is a registered function in its encoded form, as executors run it.
type RawFunc func(ctx context.Context, arg []byte) ([]byte, error)

// Errors of the executor and registry seams; back-ends wrap them with
// context so that errors.Is works in both placements.
var (
	ErrUnknownBackend = errors.New("unknown back-end")
	ErrUnknownFunc    = errors.New("no function registered under that name")
	ErrExecutorClosed = errors.New("executor closed")
	// ErrBackendDied: the process serving a call died before it answered.
	// The call may or may not have run; the executor does not retry it.
	ErrBackendDied = errors.New("back-end process died during the call")
)

// CallError is the error a registered function returned, or its panic,
// carried as text so that it reads the same whichever placement ran it.
// Err holds the original error when the function ran in this process.
type CallError struct {
	Func    string
	Message string
	Err     error
}

func (e *CallError) Error() string { return fmt.Sprintf("function %q failed: %s", e.Func, e.Message) }

// Unwrap returns the function's own error when it ran in this process.
func (e *CallError) Unwrap() error { return e.Err }

var funcs struct {
	sync.RWMutex
	m map[string]RawFunc
}

// RegisterFunc makes fn callable by name through any Executor. It is meant
// for init functions (every process of the program must register the same
// names), so it panics on an empty name, a nil function or a duplicate.
func RegisterFunc(name string, fn RawFunc) {
	if name == "" || fn == nil {
		panic("sdk.RegisterFunc: empty name or nil function")
	}
	funcs.Lock()
	defer funcs.Unlock()
	if funcs.m == nil {
		funcs.m = make(map[string]RawFunc)
	}
	if _, dup := funcs.m[name]; dup {
		panic(fmt.Sprintf("sdk.RegisterFunc: function %q registered twice", name))
	}
	funcs.m[name] = fn
}

// LookupFunc returns the function registered under name.
func LookupFunc(name string) (RawFunc, bool) {
	funcs.RLock()
	defer funcs.RUnlock()
	fn, ok := funcs.m[name]
	return fn, ok
}

// FuncNames lists the registered function names, sorted.
func FuncNames() []string {
	funcs.RLock()
	defer funcs.RUnlock()
	names := make([]string, 0, len(funcs.m))
	for n := range funcs.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// RunFunc runs the function registered under name in this process: what an
// executor back-end (in process, or in a worker serving a host) does with a
// call. A panic becomes a *CallError, as does an error the function returns.
func RunFunc(ctx context.Context, name string, arg []byte) (res []byte, err error) {
	fn, ok := LookupFunc(name)
	if !ok {
		return nil, fmt.Errorf("call %q: %w", name, ErrUnknownFunc)
	}
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, &CallError{Func: name, Message: fmt.Sprintf("panic: %v", r)}
		}
	}()
	res, err = fn(ctx, arg)
	var ce *CallError
	if err != nil && !errors.As(err, &ce) {
		err = &CallError{Func: name, Message: err.Error(), Err: err}
	}
	return res, err
}

// Func is a typed handle on a registered function: it encodes arguments and
// decodes results as JSON, an encoding a worker in another language can
// also speak. Make one with NewFunc in a package-level var, so that it is
// registered in every process of the program.
type Func[A, R any] struct{ name string }

// NewFunc registers fn under name (see RegisterFunc) and returns its handle.
func NewFunc[A, R any](name string, fn func(context.Context, A) (R, error)) Func[A, R] {
	RegisterFunc(name, func(ctx context.Context, arg []byte) ([]byte, error) {
		var a A
		if err := json.Unmarshal(arg, &a); err != nil {
			return nil, fmt.Errorf("decoding the argument: %w", err)
		}
		r, err := fn(ctx, a)
		if err != nil {
			return nil, err
		}
		return json.Marshal(r)
	})
	return Func[A, R]{name: name}
}

// Name is the name the function is registered under.
func (f Func[A, R]) Name() string { return f.name }

// Encode encodes an argument for Executor.Call.
func (f Func[A, R]) Encode(a A) ([]byte, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("call %q: encoding the argument: %w", f.name, err)
	}
	return b, nil
}

// Decode decodes a result of Executor.Call.
func (f Func[A, R]) Decode(b []byte) (R, error) {
	var r R
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("call %q: decoding the result: %w", f.name, err)
	}
	return r, nil
}

// Call encodes a, runs f on ex and decodes the result: the typed form of
// Executor.Call, for callers off the loop (the kernel's RunFunc wraps it in a
// future).
func (f Func[A, R]) Call(ctx context.Context, ex Executor, a A) (R, error) {
	var zero R
	arg, err := f.Encode(a)
	if err != nil {
		return zero, err
	}
	res, err := ex.Call(ctx, f.name, arg)
	if err != nil {
		return zero, err
	}
	return f.Decode(res)
}

// CallStarter is an Executor that can also start a call without blocking,
// so that an event loop sends it from its own goroutine and waits for the
// answer in its own poller: no goroutine of the caller's waits on the call,
// and a round trip costs the wake-up of the worker and of the loop, no
// more (asyncio's run_in_executor hands each call to a thread and back).
// The kernel's CallFunc uses it when the loop's function executor has it.
type CallStarter interface {
	Executor
	// StartCall sends the call now if that cannot block, and returns it in
	// flight. ok false with a nil error: nothing was sent (an argument too
	// large to send in one go, a deadline the executor would have to
	// watch, a queue bound Call enforces) and the caller uses Call instead.
	// ok false with an error wrapping ErrWouldWait: nothing was sent, every
	// worker is busy and the executor does not bound its queue, so the
	// caller may hold the call until one of its own started calls ends and
	// try again then (or use Call). Any other error is the call's.
	StartCall(ctx context.Context, fn string, arg []byte) (call StartedCall, ok bool, err error)
}

// ErrWouldWait is wrapped by the error of a CallStarter.StartCall that
// found every worker busy: the call was not sent and may wait.
var ErrWouldWait = errors.New("every worker is busy")

// StartedCall is a call in flight that CallStarter.StartCall began. Its
// methods are for one goroutine at a time.
type StartedCall interface {
	// Fd is readable when Poll has something to read. The caller watches
	// it for reading and stops before each Poll: once Poll reports done,
	// or after Abandon, the executor may reuse or close it.
	Fd() int
	// Poll reads what has arrived of the answer without blocking. done:
	// the call is over, with its result or error, and the StartedCall is
	// spent; not done: watch Fd again.
	Poll() (res []byte, err error, done bool)
	// Abandon gives the call up (its caller cancelled it, or is closing);
	// the executor settles it on its own, as Call does with a call whose
	// context ended. The StartedCall is spent.
	Abandon()
}
