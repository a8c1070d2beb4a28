package executor

import (
	"context"
	"errors"
	"fmt"

	"github.com/loopkernel/loopkernel/sdk"
)

// Started calls (sdk.CallStarter): the loop's way into the pool. Call
// blocks its goroutine in poll(2) until the answer comes, so an event loop
// that used it would hand each call to a goroutine and have that goroutine
// hand the result back, waking a thread at each step. StartCall instead
// sends the call on the caller's goroutine (the loop's) to an idle worker
// and returns; the loop watches the worker's channel in its own poller and
// reads the answer with Poll when it is there. A round trip is then the
// worker's wake-up and the loop's, the least two processes can do.
//
// StartCall takes only what cannot block: an idle worker (no queue wait),
// an argument that goes in one packet (no shared memory to fill, no
// packets the worker must drain first), and no deadline (nothing to watch
// but the answer). Anything else is left to Call, on a goroutine.
//
// While a call is started its worker is held (worker.held, under p.mu): the
// loop watches its channel, so Close must not close that descriptor. Close
// shuts the socket down instead, which makes it readable, stops the worker's
// process, and leaves the descriptor to the started call, whose Poll or
// Abandon releases it.

var _ sdk.CallStarter = (*Pool)(nil)

// errBusy is StartCall's answer when every worker is busy and the pool has
// no queue bound: the caller may hold the call until one of its started
// calls ends.
var errBusy = fmt.Errorf("process pool: %w", sdk.ErrWouldWait)

// startedCall is a call StartCall sent: one per worker, since a worker runs
// one call at a time, so starting a call allocates nothing.
type startedCall struct {
	p   *Pool
	w   *worker
	fn  string
	seq uint32
}

// StartCall sends the call to an idle worker without waiting and returns it
// in flight (sdk.CallStarter); ok is false when the argument is too large
// to send at once (it would go through shared memory, or in several
// packets), the call has a deadline (from ctx or PoolOptions.CallTimeout),
// no worker is idle in a pool with a Queue bound (whose back-pressure Call
// applies), or the pool is closed or broken: Call then does it, or says why
// not. When no worker is idle in a pool without a bound, the error wraps
// sdk.ErrWouldWait.
func (p *Pool) StartCall(ctx context.Context, fn string, arg []byte) (sdk.StartedCall, bool, error) {
	if _, ok := sdk.LookupFunc(fn); !ok || len(fn) > maxNameLen {
		return nil, false, fmt.Errorf("process pool: call %q: %w", fn, sdk.ErrUnknownFunc)
	}
	if _, ok := ctx.Deadline(); ok || p.opts.CallTimeout > 0 || ctx.Err() != nil {
		return nil, false, nil
	}
	if p.opts.ShmThreshold >= 0 && len(arg) >= p.opts.ShmThreshold || envHeaderLen+len(fn)+len(arg) > maxPayload {
		return nil, false, nil
	}
	if p.admit != nil {
		select {
		case p.admit <- struct{}{}:
		default:
			return nil, false, nil
		}
	}
	var w *worker
	select {
	case w = <-p.idle:
	default:
		if p.admit != nil {
			p.unadmit()
			return nil, false, nil // Call waits within the queue bound, or fails fast
		}
		return nil, false, errBusy
	}
	p.mu.Lock()
	if p.closed || p.broken != nil {
		p.mu.Unlock()
		p.idle <- w // Close stops it
		p.unadmit()
		return nil, false, nil
	}
	w.held = true
	p.mu.Unlock()

	msg, err := w.envelope(ctx, fn, arg, p.opts.ShmThreshold)
	if err == nil {
		w.ch.seq++
		err = w.ch.send(kindCall, w.ch.seq, msg)
	}
	if err != nil {
		defer p.unadmit()
		if p.unhold(w) {
			return nil, false, nil // Call reports the pool closed
		}
		defer p.calls.Done()
		p.replace(w)
		if errors.Is(err, errPeerGone) {
			return nil, false, nil // it died before the call: Call takes another worker
		}
		return nil, false, fmt.Errorf("process pool: call %q: worker %d: %w", fn, w.pid, err)
	}
	w.ch.asm.reset(kindAnswer)
	w.started = startedCall{p: p, w: w, fn: fn, seq: w.ch.seq}
	return &w.started, true, nil
}

// Fd is the worker channel's socket (sdk.StartedCall).
func (c *startedCall) Fd() int { return c.w.ch.fd }

// Poll reads the answer as far as it has arrived (sdk.StartedCall).
func (c *startedCall) Poll() ([]byte, error, bool) {
	p, w, fn := c.p, c.w, c.fn // c is w's, and w may be another call's once concluded
	raw, err := w.ch.poll(c.seq)
	if errors.Is(err, errNotYet) {
		return nil, nil, false
	}
	defer p.unadmit()
	if p.unhold(w) {
		return nil, fmt.Errorf("process pool: call %q: %w", fn, sdk.ErrExecutorClosed), true
	}
	defer p.calls.Done()
	res, err := p.conclude(w, fn, raw, err)
	return res, err, true
}

// Abandon gives the call up (sdk.StartedCall): the worker is told to
// cancel it and is replaced if it does not end within PoolOptions.Grace,
// as for a Call whose context ended.
func (c *startedCall) Abandon() {
	p, w, seq := c.p, c.w, c.seq
	defer p.unadmit()
	if p.unhold(w) {
		return
	}
	defer p.calls.Done()
	p.settle(w, seq)
}

// unhold ends w's started call; if the pool closed meanwhile (Close left
// w's channel to the call), it stops w and reports true. Otherwise the
// caller is counted in p.calls, as a Call is, until it has handed w on:
// Close waits for that before it stops the workers.
func (p *Pool) unhold(w *worker) (closed bool) {
	p.mu.Lock()
	w.held = false
	closed = p.closed
	if !closed {
		p.calls.Add(1)
	}
	p.mu.Unlock()
	if closed {
		w.stop()
	}
	return closed
}

// unadmit gives back the queue token of a call that leaves.
func (p *Pool) unadmit() {
	if p.admit != nil {
		<-p.admit
	}
}
