package kernel

import (
	"context"
	"errors"
	"fmt"

	"github.com/loopkernel/loopkernel/sdk"
)

// Calls started on the loop's goroutine (sdk.CallStarter). CallFunc on an
// executor that can start a call without blocking (the process pool) sends
// it from here and watches the executor's descriptor like any reader: when
// the answer arrives, the loop reads it and completes the future in the
// same callback. No goroutine waits on the call and nothing is handed back
// through the threadsafe queue, so a round trip wakes two threads, the
// worker's and the loop's, instead of four or more.
//
// A call that finds every worker busy (StartCall's sdk.ErrWouldWait: an
// executor without a queue bound) waits on the loop while this loop has
// started calls in flight: each one that ends has just given its worker
// back, so the loop starts the next waiting call there and then, in FIFO
// order. A call the executor declines outright (ok false: a large argument,
// a bounded queue whose back-pressure Call applies), and the waiting calls
// once none is left in flight, go to goroutines and Call as before.

// startedCall is one call in flight that the loop watches.
type startedCall struct {
	c  sdk.StartedCall
	fd int
}

// waitingCall is a call that waits on the loop for a started call to end.
// start tries to start it; call hands it to a goroutine and Call. Both are
// no-ops once its future is done (cancelled while it waited).
type waitingCall struct {
	start func() startOutcome
	call  func()
}

// startOutcome is what came of trying to start a call.
type startOutcome int8

const (
	startDone     startOutcome = iota // started, failed, or no longer wanted
	startBusy                         // every worker busy: it may wait on the loop
	startDeclined                     // only Call can take it
)

// callFunc runs f's call through cs: started now, waiting on the loop, or
// on a goroutine (offLoop) when neither applies.
func callFunc[A, R any](l *Loop, cs sdk.CallStarter, f sdk.Func[A, R], arg []byte) (*Future[R], error) {
	fut := CreateFuture[R](l)
	start := func() startOutcome {
		if fut.Done() {
			return startDone
		}
		c, ok, err := cs.StartCall(l.lifeContext(), f.Name(), arg)
		switch {
		case errors.Is(err, sdk.ErrWouldWait):
			return startBusy
		case err != nil:
			fut.SetException(err)
		case ok:
			watchStarted(l, fut, f, c)
		default:
			return startDeclined
		}
		return startDone
	}
	call := func() {
		if fut.Done() {
			return
		}
		g, err := offLoop(l, "call "+f.Name(), func(ctx context.Context) (R, error) {
			res, err := cs.Call(ctx, f.Name(), arg)
			if err != nil {
				var zero R
				return zero, err
			}
			return f.Decode(res)
		})
		if err != nil {
			fut.SetException(err)
			return
		}
		g.AddDoneCallback(func(g *Future[R]) {
			if fut.Done() {
				return
			}
			if v, err := g.Result(); err != nil {
				fut.SetException(err)
			} else {
				fut.SetResult(v)
			}
		})
		fut.addDone(func() {
			if fut.Cancelled() {
				g.Cancel() // abandons the wait in Call
			}
		})
	}
	out := startBusy
	if len(l.be.waiting) == 0 { // else they go first
		out = start()
	}
	switch {
	case out == startBusy && len(l.be.started) > 0:
		l.be.waiting = append(l.be.waiting, waitingCall{start, call})
	case out != startDone:
		call()
	}
	return fut, nil
}

// watchStarted watches c's descriptor and completes fut with its answer.
func watchStarted[A, R any](l *Loop, fut *Future[R], f sdk.Func[A, R], c sdk.StartedCall) {
	s := &startedCall{c: c, fd: c.Fd()}
	var onReadable func()
	onReadable = func() {
		// Not watched while Poll runs: once the call is over the
		// executor may reuse or close the descriptor.
		_, _ = l.RemoveReader(s.fd)
		res, err, done := c.Poll()
		if !done {
			if err := l.AddReader(s.fd, onReadable); err != nil {
				l.endStarted(s, true)
				fut.SetException(fmt.Errorf("call %q: watching the executor: %w", f.Name(), err))
			}
			return
		}
		l.endStarted(s, false)
		if fut.Done() {
			return
		}
		var r R
		if err == nil {
			r, err = f.Decode(res)
		}
		if err != nil {
			fut.SetException(err)
		} else {
			fut.SetResult(r)
		}
	}
	if err := l.AddReader(s.fd, onReadable); err != nil {
		c.Abandon()
		fut.SetException(fmt.Errorf("call %q: watching the executor: %w", f.Name(), err))
		return
	}
	if l.be.started == nil {
		l.be.started = make(map[*startedCall]struct{})
	}
	l.be.started[s] = struct{}{}
	// Cancelled (directly or through its task): give the call up, as the
	// goroutine path's cancelled context does.
	fut.addDone(func() {
		if _, live := l.be.started[s]; live {
			_, _ = l.RemoveReader(s.fd)
			l.endStarted(s, true)
		}
	})
}

// endStarted forgets s, abandoning its call if it is not over, and moves
// the waiting calls on: the next one starts on the worker s gave back (an
// abandoned call's worker settles first, so none is free then); one the
// executor declines outright goes to a goroutine, and the next is tried.
// When the executor is busy again, the rest wait for the next end; with no
// started call left to end, they all go to goroutines.
func (l *Loop) endStarted(s *startedCall, abandon bool) {
	delete(l.be.started, s)
	if abandon {
		s.c.Abandon()
	}
	for len(l.be.waiting) > 0 {
		w := l.be.waiting[0]
		out := w.start()
		if out == startBusy {
			break
		}
		l.be.waiting[0] = waitingCall{}
		l.be.waiting = l.be.waiting[1:]
		if out == startDeclined {
			w.call()
		}
	}
	if len(l.be.waiting) > 0 && len(l.be.started) == 0 {
		w := l.be.waiting
		l.be.waiting = nil
		for _, c := range w {
			c.call()
		}
	}
}

// abandonStarted gives up every started call, for Close (the watches go
// first, since an abandoned call's descriptor is the executor's again), and
// drops the calls waiting for them.
func (l *Loop) abandonStarted() {
	l.be.waiting = nil
	for s := range l.be.started {
		_, _ = l.RemoveReader(s.fd)
		delete(l.be.started, s)
		s.c.Abandon()
	}
}
