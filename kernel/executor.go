package kernel

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
)

// Executor runs blocking functions off the loop (asyncio: the executor of
// run_in_executor). Submit must not block the loop for long.
type Executor interface {
	// Submit arranges for fn to run; it fails once the executor is shut down.
	Submit(fn func()) error
	// Shutdown stops accepting work; with wait it also waits for running
	// work to finish.
	Shutdown(wait bool)
}

// ErrExecutorShutdown: work submitted to an executor that was shut down.
var ErrExecutorShutdown = errors.New("executor is shut down")

// goExecutor runs each function on its own goroutine, at most limit at a
// time (like Python's ThreadPoolExecutor: min(32, cores+4)). Waiting work
// queues as parked goroutines, which cost a few KiB each and never block the
// caller.
type goExecutor struct {
	sem  chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	shut bool
}

// NewGoExecutor returns the default executor: goroutines, at most limit
// running at once (limit <= 0 picks min(32, NumCPU+4)).
func NewGoExecutor(limit int) Executor {
	if limit <= 0 {
		limit = min(32, runtime.NumCPU()+4)
	}
	return &goExecutor{sem: make(chan struct{}, limit)}
}

func (e *goExecutor) Submit(fn func()) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.shut {
		return ErrExecutorShutdown
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.sem <- struct{}{}
		defer func() { <-e.sem }()
		fn()
	}()
	return nil
}

func (e *goExecutor) Shutdown(wait bool) {
	e.mu.Lock()
	e.shut = true
	e.mu.Unlock()
	if wait {
		e.wg.Wait()
	}
}

// SetDefaultExecutor sets the executor RunInExecutor uses when given nil.
// The loop does not shut down an executor it was given.
func (l *Loop) SetDefaultExecutor(e Executor) {
	if l.executor != nil && l.ownExecutor {
		l.executor.Shutdown(false)
	}
	l.executor, l.ownExecutor = e, false
}

// ShutdownDefaultExecutor shuts the default executor down and returns a
// future that completes when its running work has finished.
// Afterwards RunInExecutor without an executor fails with
// ErrExecutorShutdown (asyncio raises RuntimeError) until SetDefaultExecutor
// installs another.
func (l *Loop) ShutdownDefaultExecutor() (*Future[struct{}], error) {
	if err := l.checkUsable(); err != nil {
		return nil, fmt.Errorf("shutdown default executor: %w", err)
	}
	f := CreateFuture[struct{}](l)
	ex := l.executor
	l.executor, l.ownExecutor = shutDownExecutor{}, false
	if ex == nil {
		f.SetResult(struct{}{})
		return f, nil
	}
	go func() {
		ex.Shutdown(true)
		l.CallSoonThreadsafe(func() { f.SetResult(struct{}{}) })
	}()
	return f, nil
}

// shutDownExecutor stands in for the default executor once it was shut
// down, so that RunInExecutor(nil) fails instead of quietly starting a new
// pool that nothing would ever shut down.
type shutDownExecutor struct{}

func (shutDownExecutor) Submit(func()) error { return ErrExecutorShutdown }
func (shutDownExecutor) Shutdown(bool)       {}

// RunInExecutor runs fn on ex (the loop's default executor when ex is nil)
// and returns a future for its result (asyncio: loop.run_in_executor). fn
// gets a context that is cancelled when the future is done, whether it was
// cancelled (directly or through the task awaiting it) or completed, and
// when the loop is closed: a blocking call that honours its context is
// abandoned instead of left running for nobody. A panic in fn becomes a
// *PanicError.
func RunInExecutor[T any](l *Loop, ex Executor, fn func(ctx context.Context) (T, error)) (*Future[T], error) {
	if err := l.checkUsable(); err != nil {
		return nil, fmt.Errorf("run in executor: %w", err)
	}
	if fn == nil {
		return nil, fmt.Errorf("run in executor: %w", ErrNilCallback)
	}
	if ex == nil {
		if l.executor == nil {
			l.executor, l.ownExecutor = NewGoExecutor(0), true
		}
		ex = l.executor
	}
	ctx, cancel := context.WithCancel(l.lifeContext())
	f := CreateFuture[T](l)
	err := ex.Submit(func() {
		v, err := callGuarded(func() (T, error) { return fn(ctx) })
		l.CallSoonThreadsafe(func() {
			if f.Done() { // cancelled meanwhile
				return
			}
			if err != nil {
				f.SetException(err)
			} else {
				f.SetResult(v)
			}
		})
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("run in executor: %w", err)
	}
	f.addDone(cancel)
	return f, nil
}

// lifeContext is a context cancelled when the loop is closed, made on first
// use: the parent of the contexts RunInExecutor hands out.
func (l *Loop) lifeContext() context.Context {
	if l.life == nil {
		l.life, l.endLife = context.WithCancel(context.Background())
	}
	return l.life
}

func callGuarded[T any](fn func() (T, error)) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError(r)
		}
	}()
	return fn()
}

// offLoop runs a blocking lookup on the default executor; its context ends
// with the returned future (see RunInExecutor), so cancelling the future (or
// the task awaiting it) abandons the lookup instead of leaving it to run on.
func offLoop[T any](l *Loop, op string, fn func(ctx context.Context) (T, error)) (*Future[T], error) {
	f, err := RunInExecutor(l, nil, fn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return f, nil
}
