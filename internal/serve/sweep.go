package serve

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/loopkernel/loopkernel/kernel"
)

// The connection deadlines of one loop. Thousands of keep-alive connections
// each with an idle timeout must not cost a timer-heap insertion and removal
// per request, so deadlines are not loop timers: a connection stores its
// deadline in a field (arming is one store, no clock read), and one coarse
// sweep per loop, a single loop timer re-armed every tick while any
// connection is registered, walks the connections and expires those whose
// deadline has passed. A deadline armed for d fires between d and d plus two
// ticks later; the tick is an eighth of the shortest timeout, at most 1 s.
// A sweep costs a compare per connection (see BenchmarkSweep); an idle
// server with no connections has no timer at all.

// expirer is a connection with a deadline; expire is called on the loop
// goroutine once its deadline has passed.
type expirer interface{ expire() }

// deadline is what a connection embeds to take part in the sweep.
type deadline struct {
	sw    *sweep
	owner expirer
	at    time.Duration // loop clock; 0 = no deadline
	slot  int           // index in sw.conns, -1 when not registered
}

type sweep struct {
	loop  *kernel.Loop
	tick  time.Duration
	now   time.Duration // loop clock at the last tick (or registration)
	conns []*deadline
	due   []*deadline // scratch of one sweep
	timer kernel.TimerHandle
	armed bool
	log   eventLog
}

func newSweep(loop *kernel.Loop, lim Limits) *sweep {
	tick := time.Second
	for _, d := range lim.timeouts() {
		tick = min(tick, d/8)
	}
	tick = max(tick, 5*time.Millisecond)
	return &sweep{loop: loop, tick: tick, log: eventLog{logger: loop.Logger()}}
}

// join registers d, owned by owner, with the sweep; it has no deadline yet.
func (sw *sweep) join(d *deadline, owner expirer) {
	d.sw, d.owner, d.at, d.slot = sw, owner, 0, len(sw.conns)
	sw.conns = append(sw.conns, d)
	if !sw.armed {
		sw.now = sw.loop.Time()
		sw.schedule()
	}
}

// leave unregisters d (idempotent).
func (d *deadline) leave() {
	if d.sw == nil || d.slot < 0 {
		return
	}
	sw := d.sw
	last := len(sw.conns) - 1
	moved := sw.conns[last]
	sw.conns[d.slot], moved.slot = moved, d.slot
	sw.conns[last] = nil
	sw.conns = sw.conns[:last]
	d.slot, d.at = -1, 0
}

// arm sets the deadline to timeout from now; timeout 0 clears it. The
// sweep's clock may be up to a tick old, so a tick is added: the deadline
// never comes early.
func (d *deadline) arm(timeout time.Duration) {
	if timeout <= 0 || d.sw == nil {
		d.at = 0
		return
	}
	d.at = d.sw.now + timeout + d.sw.tick
}

func (d *deadline) disarm() { d.at = 0 }

func (sw *sweep) schedule() {
	th, err := sw.loop.CallLater(sw.tick, sw.run)
	sw.timer, sw.armed = th, err == nil
}

// run is one tick: expire what is due, then re-arm while anything is left.
func (sw *sweep) run() {
	sw.armed = false
	sw.now = sw.loop.Time()
	sw.due = sw.due[:0]
	for _, d := range sw.conns {
		if d.at != 0 && d.at <= sw.now {
			d.at = 0
			sw.due = append(sw.due, d)
		}
	}
	// Expiring closes connections, which leave the sweep and reorder
	// sw.conns; hence the scratch list.
	for i, d := range sw.due {
		sw.due[i] = nil
		d.owner.expire()
	}
	sw.log.flush(sw.now)
	if len(sw.conns) > 0 {
		sw.schedule()
	}
}

// stop cancels the sweep's timer (the loop is shutting down).
func (sw *sweep) stop() {
	if sw.armed {
		sw.timer.Cancel()
		sw.armed = false
	}
}

// eventLog logs the limits that fire, with a budget: an attack of ten
// thousand slow connections must not become ten thousand log lines a
// second. Beyond logBudget lines a second per loop, events are counted and
// summed up in one line at the next tick after the second ends.
type eventLog struct {
	logger  hclog.Logger
	window  time.Duration // start of the current second
	lines   int
	dropped int
}

const logBudget = 20

func (e *eventLog) event(now time.Duration, warn bool, msg string, peer net.Addr, args ...any) {
	if now-e.window >= time.Second {
		e.flush(now)
	}
	if e.lines >= logBudget {
		e.dropped++
		return
	}
	e.lines++
	args = append([]any{"peer", addrString(peer)}, args...)
	if warn {
		e.logger.Warn(msg, args...)
	} else {
		e.logger.Info(msg, args...)
	}
}

func (e *eventLog) flush(now time.Duration) {
	if now-e.window < time.Second {
		return
	}
	if e.dropped > 0 {
		e.logger.Warn(fmt.Sprintf("serve: %d more connection limit events not logged", e.dropped),
			"within", (now - e.window).Round(time.Millisecond).String(), "budget_per_second", logBudget)
	}
	e.window, e.lines, e.dropped = now, 0, 0
}

func addrString(a net.Addr) string {
	if a == nil {
		return "unknown"
	}
	if s := a.String(); s != "" {
		return s
	}
	return a.Network() + ":(unnamed)"
}

// peerOf returns the transport's peer address, or nil.
func peerOf(t kernel.BaseTransport) net.Addr {
	if t == nil {
		return nil
	}
	v, _ := t.GetExtraInfo("peername")
	a, _ := v.(net.Addr)
	return a
}

// closeExpired ends a connection whose deadline passed: gracefully when
// nothing is waiting to be written, at once when the peer is not reading
// what it was sent (a graceful close would wait on it forever).
func closeExpired(t kernel.Transport) {
	if t.GetWriteBufferSize() > 0 {
		t.Abort()
		return
	}
	t.Close()
}
