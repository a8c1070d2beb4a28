package kernel

import (
	"errors"
	"fmt"
	"iter"
)

// ErrAsyncGenRunning: Next or Aclose on an async generator that is already
// being advanced.
var ErrAsyncGenRunning = errors.New("asynchronous generator is already running")

// asyncGenCloser is how the loop finalises the async generators it tracks.
type asyncGenCloser interface {
	Aclose(co *Co) error
	abandon()
}

// genStep is what an async generator's body hands its driver: a value, or a
// request to suspend until wait is done (wait nil: a bare yield).
type genStep[T any] struct {
	value   T
	isValue bool
	wait    *futureCore
}

// AsyncGen is an asynchronous generator: a body that yields values and may
// await between them (Python's async def ... yield). The loop tracks every
// open AsyncGen it created so that ShutdownAsyncGens can finalise them, which
// runs each body's clean-up (its defers, including awaits they make).
type AsyncGen[T any] struct {
	loop      *Loop
	next      func() (genStep[T], bool)
	stop      func()
	resumeErr error // what the body's pending await returns when resumed
	err       error // what the body returned
	started   bool
	closing   bool
	finished  bool
	running   bool
}

// NewAsyncGen creates an async generator on l. The body yields values with
// yield, which returns false when the consumer closes the generator: the
// body must then return (it may still await during its clean-up).
func NewAsyncGen[T any](l *Loop, body func(co *Co, yield func(T) bool) error) (*AsyncGen[T], error) {
	if err := l.checkUsable(); err != nil {
		return nil, fmt.Errorf("new async generator: %w", err)
	}
	if l.asyncgensShutdown {
		l.logger.Warn("asynchronous generator created after ShutdownAsyncGens; it will not be finalised by the loop")
	}
	g := &AsyncGen[T]{loop: l}
	g.next, g.stop = iter.Pull(func(pull func(genStep[T]) bool) {
		// This goroutine acts for l while the body runs (goroutine.go).
		gid := l.registerCoroutine()
		defer unregisterCoroutine(gid)
		co := &Co{loop: l, suspend: func(w *futureCore) error {
			if !pull(genStep[T]{wait: w}) {
				return errAbandoned
			}
			err := g.resumeErr
			g.resumeErr = nil
			return err
		}}
		g.err = body(co, func(v T) bool {
			if g.closing {
				return false
			}
			return pull(genStep[T]{value: v, isValue: true}) && !g.closing
		})
	})
	if !l.asyncgensShutdown {
		if l.asyncgens == nil {
			l.asyncgens = make(map[asyncGenCloser]struct{})
		}
		l.asyncgens[g] = struct{}{}
	}
	return g, nil
}

// Next advances the generator from the consumer coroutine co: it returns the
// next value and true, or false once the body has returned (with the error
// it returned, if any).
func (g *AsyncGen[T]) Next(co *Co) (T, bool, error) {
	var zero T
	if g.finished {
		return zero, false, nil
	}
	if g.running {
		return zero, false, ErrAsyncGenRunning
	}
	g.running, g.started = true, true
	defer func() { g.running = false }()
	for {
		step, ok := g.next()
		if !ok {
			g.finish()
			return zero, false, g.err
		}
		if step.isValue {
			return step.value, true, nil
		}
		g.resumeErr = g.forward(co, step.wait)
	}
}

// forward makes the consumer wait for what the body awaits.
func (g *AsyncGen[T]) forward(co *Co, w *futureCore) error {
	if w == nil {
		return co.Yield()
	}
	return co.await(w)
}

// Aclose closes the generator (Python: aclose()): the body's pending yield
// returns false and the body runs its clean-up, awaiting through co. A body
// that yields another value instead of returning is an error.
func (g *AsyncGen[T]) Aclose(co *Co) error {
	if g.finished {
		return nil
	}
	if g.running {
		return ErrAsyncGenRunning
	}
	if !g.started {
		g.stop()
		g.finish()
		return nil
	}
	g.running, g.closing = true, true
	defer func() { g.running = false }()
	for {
		step, ok := g.next()
		if !ok {
			g.finish()
			return g.err
		}
		if step.isValue {
			g.stop()
			g.finish()
			return errors.New("asynchronous generator ignored close: it yielded a value while closing")
		}
		g.resumeErr = g.forward(co, step.wait)
	}
}

// abandon ends the body of a generator still open when the loop closes, so
// that its goroutine is released rather than parked forever: the pending
// yield returns false and any await the clean-up makes returns an error
// matching ErrClosed. A panic in the clean-up is reported, not raised out of
// Close.
func (g *AsyncGen[T]) abandon() {
	if g.finished {
		return
	}
	g.finished = true
	defer func() {
		if r := recover(); r != nil {
			g.loop.CallExceptionHandler(ErrorContext{
				Message: "asynchronous generator panicked while the event loop closed",
				Err:     newPanicError(r),
			})
		}
	}()
	g.stop()
}

func (g *AsyncGen[T]) finish() {
	g.finished = true
	delete(g.loop.asyncgens, g)
}

// ShutdownAsyncGens closes every async generator the loop is tracking,
// concurrently, and returns a task that completes when all are closed.
// Errors from their clean-up go to the exception handler. Generators created
// afterwards are not tracked (and a warning is logged).
func (l *Loop) ShutdownAsyncGens() (*Task[struct{}], error) {
	l.asyncgensShutdown = true
	gens := make([]asyncGenCloser, 0, len(l.asyncgens))
	for g := range l.asyncgens {
		gens = append(gens, g)
	}
	return CreateTask(l, func(co *Co) (struct{}, error) {
		closers := make([]*Task[struct{}], 0, len(gens))
		for _, g := range gens {
			t, err := CreateTask(l, func(co *Co) (struct{}, error) { return struct{}{}, g.Aclose(co) })
			if err != nil {
				return struct{}{}, err
			}
			closers = append(closers, t)
		}
		for i, t := range closers {
			if _, err := t.Await(co); err != nil {
				if errors.Is(err, ErrCancelled) && co.loop.currentTask != nil && co.loop.currentTask.mustCancel {
					return struct{}{}, err
				}
				l.CallExceptionHandler(ErrorContext{
					Message: "an error occurred during closing of asynchronous generator",
					Err:     err,
					Task:    closers[i],
				})
			}
		}
		return struct{}{}, nil
	})
}
