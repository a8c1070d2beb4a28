package dataplane

import (
	"runtime"
	"time"
)

// yieldEvery bounds how long a goroutine driving the data plane goes without
// passing through the Go scheduler.
//
// Why this exists: both ends of the data plane are goroutines that never
// park. They only ever block inside system calls (recvmsg, epoll_wait), and
// a system call does not count as scheduling. The runtime's sysmon takes a
// P whose goroutine has not been scheduled for 10 ms (forcePreemptNS) for a
// hog, and from then on retakes that P from every system call it catches in
// progress, whether or not anyone else wants it: a handoff that wakes
// another thread with a futex, a P to win back when the call returns, and a
// sysmon that keeps polling every 20 µs because it keeps finding work. On a
// two-core VM a child that only did recvmsg and sendmsg paid about 0.5
// futex, 0.35 nanosleep and 0.8 context switches per exchange for this,
// doubling its CPU per exchange (about 21 against 10 µs); yielding now and
// then keeps the goroutine's scheduling tick fresh and all of that goes
// away. The interval is well inside the 10 ms with room for sysmon's own
// sampling, and rare enough that the yield's own cost (it wakes an idle
// thread, which takes the goroutine over) stays negligible.
//
// A goroutine that exchanges rarely (an idle loop waking for a timer) gains
// nothing from yielding, since sysmon's retakes cost it no more than the
// yield would; so a yield also waits for yieldMinTicks exchanges.
const (
	yieldEvery    = 4 * time.Millisecond
	yieldMinTicks = 4
)

// yielder calls runtime.Gosched at most once per yieldEvery and per
// yieldMinTicks ticks.
type yielder struct {
	last  time.Time
	ticks int
}

// tick is called once per exchange. Every yieldMinTicks-th call reads the
// clock (a vDSO call) and yields if the interval has passed; it reports
// whether it did.
func (y *yielder) tick() bool {
	if y.ticks++; y.ticks < yieldMinTicks {
		return false
	}
	y.ticks = 0
	now := time.Now()
	if now.Sub(y.last) < yieldEvery {
		return false
	}
	y.last = now
	runtime.Gosched()
	return true
}
