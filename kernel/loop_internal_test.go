package kernel

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/plugins/selector"
)

func newTestLoop(t *testing.T) *Loop {
	t.Helper()
	sel, err := selector.NewPoll()
	require.NoError(t, err)
	// Debug mode explicitly off: LOOPKERNEL_DEBUG must not change what
	// these white-box tests measure (debug mode allocates per callback).
	l := New(sel, WithLogger(hclog.NewNullLogger()), WithDebug(false))
	t.Cleanup(func() { l.Close() })
	return l
}

// iterate runs one iteration without blocking: a stopping loop polls with
// a zero timeout.
func iterate(l *Loop) {
	l.stopping = true
	l.runOnce()
	l.stopping = false
}

func nop() {}

// TestTimerSweepBookkeeping follows CPython's cleanup test: cancelled timers
// at the head are popped and uncounted, deeper ones wait until they are more
// than half of a heap that is not tiny, then all go at once.
func TestTimerSweepBookkeeping(t *testing.T) {
	l := newTestLoop(t)
	_, err := l.CallLater(3000*time.Second, nop) // live, keeps the rest off the head
	require.NoError(t, err)
	for range 2 {
		th, err := l.CallLater(3600*time.Second, nop)
		require.NoError(t, err)
		th.Cancel()
	}
	for range 2 {
		th, err := l.CallLater(100*time.Second, nop) // will be at the head
		require.NoError(t, err)
		th.Cancel()
	}
	require.Equal(t, 4, l.cancelledTimers)
	iterate(l)
	require.Equal(t, 2, l.cancelledTimers, "cancelled timers at the head are popped and uncounted")
	require.Equal(t, 3, len(l.timers), "cancelled timers deeper in a small heap stay until the sweep threshold")

	live := 1
	for range minTimersForSweep {
		_, err := l.CallLater(3600*time.Second, nop)
		require.NoError(t, err)
		live++
	}
	cancelled := l.cancelledTimers
	for range minTimersForSweep + 5 {
		th, err := l.CallLater(3600*time.Second, nop)
		require.NoError(t, err)
		th.Cancel()
		cancelled++
	}
	require.Equal(t, cancelled, l.cancelledTimers)
	require.Equal(t, live+cancelled, len(l.timers))
	iterate(l)
	require.Equal(t, live, len(l.timers), "more than half cancelled: the sweep drops them all")
	require.Zero(t, l.cancelledTimers)
	for i, h := range l.timers {
		require.False(t, h.cancelled, "timer %d survived the sweep cancelled", i)
		require.Equal(t, i, h.index, "timer %d has a stale heap index", i)
	}
	// The heap order survived the rebuild: timers pop in deadline order.
	prev := time.Duration(-1)
	for len(l.timers) > 0 {
		h := l.timers.pop()
		require.GreaterOrEqual(t, h.when, prev)
		prev = h.when
	}
}

// TestDropTimer: dropping a timer takes it out of the heap wherever it
// lies, recycles its handle at once, and leaves a heap that still pops the
// remaining timers in deadline order with true indices.
func TestDropTimer(t *testing.T) {
	l := newTestLoop(t)
	var ths []TimerHandle
	for i := range 50 {
		// Deadlines out of scheduling order, so drops hit every level.
		th, err := l.CallLater(time.Duration((i*37)%50+1)*time.Hour, nop)
		require.NoError(t, err)
		ths = append(ths, th)
	}
	dropped := map[*handle]bool{}
	for i := 0; i < len(ths); i += 3 {
		h := ths[i].h
		l.dropTimer(ths[i])
		dropped[h] = true
		require.Equal(t, -1, h.index)
		require.False(t, ths[i].live(), "a dropped timer's handle is recycled")
		require.Same(t, h, l.free, "the dropped handle is the next one reused")
		l.dropTimer(ths[i]) // stale now: nothing happens
	}
	require.Zero(t, l.cancelledTimers, "a dropped timer is not left in the heap cancelled")
	require.Equal(t, len(ths)-len(dropped), len(l.timers))
	for i, h := range l.timers {
		require.Equal(t, i, h.index, "timer %d has a stale heap index", i)
		require.False(t, dropped[h])
	}
	prev := time.Duration(-1)
	for len(l.timers) > 0 {
		h := l.timers.pop()
		require.GreaterOrEqual(t, h.when, prev)
		prev = h.when
	}
}

// TestUnarmedTimers: a deadline kept unarmed waits outside the heap with
// its delay until the loop reads its clock, is never due before delay has
// passed from a reading after it was made, and drops from anywhere in the
// unarmed list, recycling its handle and keeping the others' slots true.
func TestUnarmedTimers(t *testing.T) {
	l := newTestLoop(t)
	var ths []TimerHandle
	for i := range 6 {
		ths = append(ths, l.callLaterUnarmed(time.Duration(i+1)*time.Hour, nop))
	}
	require.Empty(t, l.timers)
	l.dropTimer(ths[1])
	l.dropTimer(ths[5])
	require.False(t, ths[1].live())
	require.Len(t, l.unarmed, 4)
	for i, h := range l.unarmed {
		require.Equal(t, unarmedIndex(i), h.index, "unarmed timer %d has a stale slot", i)
	}
	before := l.Time()
	iterate(l) // reads the clock: arms them
	require.Empty(t, l.unarmed)
	require.Len(t, l.timers, 4)
	for i, h := range l.timers {
		require.Equal(t, i, h.index)
		require.Greater(t, h.when, before+time.Hour-1, "an armed deadline counts from a reading after it was made")
	}
	l.dropTimer(ths[0])
	require.Len(t, l.timers, 3)

	// A short WaitFor-like deadline on an idle loop: the loop reads its
	// clock before it blocks, so the deadline is armed and fires.
	fired := false
	l.callLaterUnarmed(5*time.Millisecond, func() { fired = true; l.Stop() })
	start := time.Now()
	require.NoError(t, l.RunForever())
	require.True(t, fired)
	require.GreaterOrEqual(t, time.Since(start), 5*time.Millisecond, "fired early")
}

// TestBusyRunReadsClockFirst: a busy loop skips clock readings while its
// first timer lies well past the last one (timerSlack), but a run starts
// with a reading, since time passed between runs: a timer that fell due
// between them runs in the new run's first iteration, however busy.
func TestBusyRunReadsClockFirst(t *testing.T) {
	l := newTestLoop(t)
	iterate(l) // read the clock
	fired := false
	_, err := l.CallLater(5*time.Millisecond, func() { fired = true; l.Stop() })
	require.NoError(t, err)
	time.Sleep(10 * time.Millisecond)
	busy := 0
	var spin func()
	spin = func() {
		busy++
		if !fired {
			l.CallSoon(spin)
		}
	}
	l.CallSoon(spin)
	require.NoError(t, l.RunForever())
	require.True(t, fired)
	require.Equal(t, 1, busy, "the due timer waited for %d busy iterations", busy)
}

// TestHandleRecycling: a handle whose callback ran goes back on the free
// list with a new generation, so the next callback reuses the record while
// the old Handle value goes stale; a cancelled handle is never recycled.
func TestHandleRecycling(t *testing.T) {
	l := newTestLoop(t)
	h1, err := l.CallSoon(nop)
	require.NoError(t, err)
	iterate(l)
	require.Same(t, h1.h, l.free, "a handle whose callback ran is recycled")
	ran := false
	h2, err := l.CallSoon(func() { ran = true })
	require.NoError(t, err)
	require.Same(t, h1.h, h2.h, "the next callback reuses the recycled handle")
	require.NotEqual(t, h1.gen, h2.gen, "a recycled handle has a new generation")
	h1.Cancel()
	require.False(t, h1.Cancelled())
	require.False(t, h2.Cancelled(), "a stale Handle cannot cancel the callback now using its record")
	iterate(l)
	require.True(t, ran)

	// A cancelled handle stays cancelled and out of the free list.
	h3, err := l.CallSoon(nop)
	require.NoError(t, err)
	h3.Cancel()
	iterate(l)
	require.True(t, h3.Cancelled())
	for f := l.free; f != nil; f = f.next {
		require.NotSame(t, h3.h, f, "a cancelled handle must not be recycled")
	}
	h4, err := l.CallSoon(nop)
	require.NoError(t, err)
	require.NotSame(t, h3.h, h4.h)
	require.True(t, h3.Cancelled(), "Cancelled stays true while the Handle is held")

	// Timers that ran are recycled the same way.
	th, err := l.CallLater(-time.Second, nop)
	require.NoError(t, err)
	iterate(l)
	iterate(l)
	require.False(t, th.live(), "a timer handle goes stale once its callback ran")
	require.Equal(t, -1, th.h.index)
}

// TestCallSoonSteadyStateAllocs: once the loop is warm, scheduling and
// running a callback allocates nothing (the handle comes from the free list
// and the ready ring does not grow).
func TestCallSoonSteadyStateAllocs(t *testing.T) {
	l := newTestLoop(t)
	for range 10 {
		_, err := l.CallSoon(nop)
		require.NoError(t, err)
		iterate(l)
	}
	allocs := testing.AllocsPerRun(200, func() {
		l.CallSoon(nop)
		iterate(l)
	})
	require.Zero(t, allocs, "CallSoon plus one iteration allocates on a warm loop")
}

// runOnce runs exactly one iteration of the loop, for tests that step it.
func (l *Loop) runOnce() {
	l.batch = -1
	for !l.iterate(true) {
	}
}
