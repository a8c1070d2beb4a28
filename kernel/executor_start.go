package kernel

import (
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

// startedCall is one call in flight that the loop watches.
type startedCall struct {
	c  sdk.StartedCall
	fd int
}

// startFunc starts f's call on cs, if cs can take it now; started is false
// (and nothing was sent) when the caller should fall back to Call on a
// goroutine. The call's own failure comes through the future, as on the
// goroutine path.
func startFunc[A, R any](l *Loop, cs sdk.CallStarter, f sdk.Func[A, R], arg []byte) (fut *Future[R], started bool, err error) {
	if !l.drv.Capabilities().Has(sdk.CapWatch) {
		return nil, false, nil // a driver that cannot watch a descriptor: a goroutine waits instead
	}
	c, ok, err := cs.StartCall(l.lifeContext(), f.Name(), arg)
	if err != nil {
		fut = CreateFuture[R](l)
		fut.SetException(err)
		return fut, true, nil
	}
	if !ok {
		return nil, false, nil
	}
	fut = CreateFuture[R](l)
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
		return fut, true, nil
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
	return fut, true, nil
}

// endStarted forgets s, abandoning its call if it is not over.
func (l *Loop) endStarted(s *startedCall, abandon bool) {
	delete(l.be.started, s)
	if abandon {
		s.c.Abandon()
	}
}

// abandonStarted gives up every started call, for Close: the watches go
// first, since an abandoned call's descriptor is the executor's again.
func (l *Loop) abandonStarted() {
	for s := range l.be.started {
		_, _ = l.RemoveReader(s.fd)
		l.endStarted(s, true)
	}
}
