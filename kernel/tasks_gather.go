package kernel

import "fmt"

// AwaitableOf is a Future[T] or Task[T]: an Awaitable whose value is a T.
// The toolkit's typed functions (Gather, WaitFor, Shield) take it, so that
// a *Task[T] and a *Future[T] mix in one call.
type AwaitableOf[T any] interface {
	Awaitable
	Result() (T, error)
	Await(co *Co) (T, error)
}

// Gather waits for every awaitable and returns their values in argument
// order (asyncio.gather). If one fails (or is cancelled), Gather returns
// that first error at once and leaves the others running, as asyncio does;
// their later errors count as read. If the calling task is cancelled, every
// awaitable still pending is cancelled and Gather returns the caller's
// *CancelledError once one of them has ended with an error or all are done.
// Awaitables of another loop return ErrDifferentLoop.
func Gather[T any](co *Co, aws ...AwaitableOf[T]) ([]T, error) {
	vals, _, err := gather(co, aws, false)
	return vals, err
}

// GatherReturnErrors is Gather with return_exceptions=True: it waits for all
// of them and returns each value and each error (a *CancelledError for a
// cancelled one) by position; err is only the caller's own cancellation (or
// ErrDifferentLoop).
func GatherReturnErrors[T any](co *Co, aws ...AwaitableOf[T]) (vals []T, errs []error, err error) {
	return gather(co, aws, true)
}

// gatherState is what the children's done callbacks share.
type gatherState struct {
	loop    *Loop
	pending int
	first   error // the first child error (gather without returnErrors)
	failed  bool
	wait    *futureCore
	retErrs bool
}

func (g *gatherState) done(c *futureCore) {
	g.pending--
	err := c.errOf() // read: a gathered error is never "unretrieved"
	if err != nil && !g.failed {
		g.failed, g.first = true, err
	}
	if g.wait != nil && !g.wait.done() && (g.pending == 0 || (err != nil && !g.retErrs)) {
		g.wait.finish(nil)
	}
}

// runHandle is the watch on a child task (futureCore.watch).
func (g *gatherState) runHandle(c *futureCore) { g.done(c) }

func (g *gatherState) describe() string { return "gather child done" }

func gather[T any](co *Co, aws []AwaitableOf[T], retErrs bool) ([]T, []error, error) {
	g := &gatherState{loop: co.loop, retErrs: retErrs}
	for i, a := range aws {
		c := a.core()
		if c.loop != co.loop {
			return nil, nil, fmt.Errorf("gather: awaitable %d: %w", i, ErrDifferentLoop)
		}
		if c.done() {
			if err := c.errOf(); err != nil && !g.failed {
				g.failed, g.first = true, err
			}
			continue
		}
		g.pending++
		if !c.watch(g) { // a future, or a task with callbacks already
			c.addDone(func() { g.done(c) })
		}
	}
	if g.pending > 0 && (retErrs || !g.failed) {
		if err := gatherWait(g, co, aws); err != nil {
			return nil, nil, err
		}
	}
	if !retErrs && g.failed {
		return nil, nil, g.first
	}
	vals := make([]T, len(aws))
	var errs []error
	if retErrs {
		errs = make([]error, len(aws))
	}
	for i, a := range aws {
		v, err := a.Result()
		vals[i] = v
		if retErrs {
			errs[i] = err
		}
	}
	return vals, errs, nil
}

// gatherWait waits for the gather to end; if the caller is cancelled meanwhile,
// it cancels the children, waits for the gather to end anyway, and returns
// the caller's cancellation.
func gatherWait[T any](g *gatherState, co *Co, aws []AwaitableOf[T]) error {
	g.wait = &futureCore{loop: g.loop}
	err := awaitCore(co, g.wait)
	if err == nil {
		return nil
	}
	cancelErr := err
	for {
		if err == errAbandoned {
			return err
		}
		for _, a := range aws {
			a.Cancel()
		}
		if g.pending == 0 || (!g.retErrs && g.failed) {
			return cancelErr
		}
		g.wait = &futureCore{loop: g.loop}
		if err = awaitCore(co, g.wait); err == nil {
			return cancelErr
		}
	}
}
