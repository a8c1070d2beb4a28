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
// sampling, and rare enough that the yield's own cost (it may wake an idle
// thread) stays negligible.
const yieldEvery = 4 * time.Millisecond

// yielder calls runtime.Gosched at most once per yieldEvery. A zero value
// yields at its first tick.
type yielder struct {
	last time.Time
}

// tick is called once per exchange. It reads the clock (a vDSO call) and
// yields when the interval has passed; it reports whether it did.
func (y *yielder) tick() bool {
	now := time.Now()
	if now.Sub(y.last) < yieldEvery {
		return false
	}
	y.last = now
	runtime.Gosched()
	return true
}
