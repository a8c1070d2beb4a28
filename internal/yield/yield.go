// Package yield is the one copy of the scheduler-yield heuristic shared by
// the loop (kernel) and the data plane (sdk/dataplane): goroutines that
// never park, because they only ever block inside system calls, pass
// through the Go scheduler now and then.
//
// Why this exists: a system call does not count as scheduling. The
// runtime's sysmon takes a P whose goroutine has not been scheduled for
// 10 ms (forcePreemptNS) for a hog, and from then on retakes that P from
// every system call it catches in progress, whether or not anyone else
// wants it: a handoff that wakes another thread with a futex, a P to win
// back when the call returns, and a sysmon that keeps polling every 20 µs
// because it keeps finding work. On a two-core VM this doubled a data-plane
// child's CPU per exchange (about 21 against 10 µs: 0.5 futex, 0.35
// nanosleep and 0.8 context switches per exchange), and yielding cut an
// epoll echo server's CPU per request from 11.5 to 9.2 µs and halved a
// task-yield loop's wall time per switch. Every is well inside the 10 ms
// with room for sysmon's own sampling, and rare enough that the yield's own
// cost (it wakes an idle thread, which takes the goroutine over) stays
// negligible. A goroutine that polls rarely (an idle loop waking for a
// timer) gains nothing from yielding, so a yield also waits for MinTicks
// polls.
//
// It imports only the standard library, so that sdk may use it and the
// kernel need not import a plugin package for it.
package yield

import (
	"runtime"
	"time"
)

const (
	// Every bounds how long a goroutine goes without passing through the
	// scheduler.
	Every = 4 * time.Millisecond
	// MinTicks is how many polls must pass before a yield.
	MinTicks = 4
)

// Ticker decides when to yield. The zero value is ready; it belongs to one
// goroutine.
type Ticker struct {
	last  time.Duration // clock reading at the last yield
	ticks int
}

// epoch anchors TickClock's readings.
var epoch = time.Now()

// Tick is called once per poll by a caller that has just read a monotonic
// clock (now, in any epoch used consistently); it yields, and reports true,
// once MinTicks polls and Every have passed since the last yield.
func (y *Ticker) Tick(now time.Duration) bool {
	if y.ticks++; y.ticks < MinTicks || now-y.last < Every {
		return false
	}
	y.last, y.ticks = now, 0
	runtime.Gosched()
	return true
}

// TickClock is Tick for a caller that has no clock reading at hand: it reads
// the clock (a vDSO call) only on every MinTicks-th call.
func (y *Ticker) TickClock() bool {
	if y.ticks++; y.ticks < MinTicks {
		return false
	}
	y.ticks = 0
	now := time.Since(epoch)
	if now-y.last < Every {
		return false
	}
	y.last = now
	runtime.Gosched()
	return true
}
