package conformance

import (
	"context"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/kernel"
)

// Timers: CallLater, CallAt and their handles.
var kernelTimerCases = []kcase{
	{name: "kernel/timer/deadline-order", run: kTimerOrder},
	{name: "kernel/timer/equal-deadlines-fifo", run: kTimerFIFO},
	{name: "kernel/timer/negative-delays", run: kTimerNegative},
	{name: "kernel/timer/call-at-time", run: kTimerCallAt},
	{name: "kernel/timer/not-early", run: kTimerNotEarly},
	{name: "kernel/timer/cancel", run: kTimerCancel},
	{name: "kernel/timer/cancelled-head-skipped", run: kTimerCancelledHead},
	{name: "kernel/timer/over-a-day", run: kTimerLong},
	{name: "kernel/timer/context-cancel", run: kTimerContext},
}

func kTimerOrder(k *kt) {
	l := k.newLoop()
	var got []int
	for _, ms := range []int{30, 10, 20, 1} {
		_, err := l.CallLater(time.Duration(ms)*time.Millisecond, func() { got = append(got, ms) })
		k.must(err, "CallLater")
	}
	_, err := l.CallLater(40*time.Millisecond, l.Stop)
	k.must(err, "CallLater")
	require.NoError(k, k.runForever(l, "timers"))
	require.Equal(k, []int{1, 10, 20, 30}, got, "rule: timers run in deadline order")
}

func kTimerFIFO(k *kt) {
	l := k.newLoop()
	when := l.Time() + 5*time.Millisecond
	var got []int
	for i := 0; i < 50; i++ {
		th, err := l.CallAt(when, func() { got = append(got, i) })
		k.must(err, "CallAt")
		require.Equal(k, when, th.When(), "rule: a CallAt handle's When is the deadline given")
	}
	_, err := l.CallAt(when+time.Millisecond, l.Stop)
	k.must(err, "CallAt")
	require.NoError(k, k.runForever(l, "equal deadlines"))
	want := make([]int, 50)
	for i := range want {
		want[i] = i
	}
	require.Equal(k, want, got, "rule: timers with equal deadlines run in the order they were scheduled")
}

func kTimerNegative(k *kt) {
	l := k.newLoop()
	var got []string
	_, err := l.CallLater(-time.Second, func() { got = append(got, "a") })
	k.must(err, "CallLater")
	_, err = l.CallLater(-2*time.Second, func() { got = append(got, "b") })
	k.must(err, "CallLater")
	_, err = l.CallLater(0, func() { got = append(got, "c") })
	k.must(err, "CallLater")
	k.runOnce(l)
	require.Equal(k, []string{"b", "a", "c"}, got, "rule: timers with negative delays are due at once, in deadline order")
}

func kTimerCallAt(k *kt) {
	l := k.newLoop()
	when := l.Time() + 15*time.Millisecond
	var at time.Duration
	th, err := l.CallAt(when, func() { at = l.Time(); l.Stop() })
	k.must(err, "CallAt")
	require.Equal(k, when, th.When())
	require.NoError(k, k.runForever(l, "CallAt"))
	require.GreaterOrEqual(k, at, when, "rule: a CallAt callback runs when Time has reached its deadline")
}

// kTimerNotEarly checks timers fire no earlier than their delay, on the
// loop's clock exactly and on the wall clock within the clock's tolerance,
// and that the loop sleeps in its selector for them rather than spinning.
// The timers are a millisecond apart, so each one that fires wakes the loop
// just before the next is due: a loop that rounds deadlines would run that
// one early.
func kTimerNotEarly(k *kt) {
	// tolerance is how far two readings of the monotonic clock may
	// disagree; it is not a scheduling allowance.
	const first, count, tolerance = 20 * time.Millisecond, 10, 100 * time.Microsecond
	l := k.newLoop()
	l.rec.waits()
	start := time.Now()
	fired := 0
	for i := 0; i < count; i++ {
		delay := first + time.Duration(i)*time.Millisecond
		var th kernel.TimerHandle
		var err error
		th, err = l.CallLater(delay, func() {
			elapsed, now := time.Since(start), l.Time()
			fired++
			assert.GreaterOrEqual(k, now, th.When(), "rule: a timer never runs before its deadline on the loop clock (timer %d)", i)
			assert.GreaterOrEqual(k, elapsed, delay-tolerance, "rule: a timer never runs before its delay has passed (timer %d)", i)
			if fired == count {
				l.Stop()
			}
		})
		k.must(err, "CallLater")
	}
	require.NoError(k, k.runForever(l, "CallLater"))
	require.Equal(k, count, fired)
	waits := l.rec.waits()
	require.NotEmpty(k, waits)
	require.Greater(k, waits[0], time.Duration(0), "rule: with only timers pending, the loop sleeps in its selector (timeouts: %v)", waits)
	require.LessOrEqual(k, waits[0], first, "rule: the loop sleeps no longer than the time to the next timer (timeouts: %v)", waits)
	require.LessOrEqual(k, len(waits), 100, "rule: the loop does not spin while waiting for timers (%d polls)", len(waits))
}

func kTimerCancel(k *kt) {
	l := k.newLoop()
	ran := false
	th, err := l.CallLater(time.Millisecond, func() { ran = true })
	k.must(err, "CallLater")
	th.Cancel()
	require.True(k, th.Cancelled(), "rule: a cancelled timer reports Cancelled")
	_, err = l.CallLater(10*time.Millisecond, l.Stop)
	k.must(err, "CallLater")
	require.NoError(k, k.runForever(l, "cancelled timer"))
	require.False(k, ran, "rule: a cancelled timer does not run")
	require.True(k, th.Cancelled(), "rule: a cancelled timer stays cancelled")
}

// kTimerCancelledHead: the poll timeout comes from the earliest live timer,
// not a cancelled one ahead of it.
func kTimerCancelledHead(k *kt) {
	l := k.newLoop()
	early, err := l.CallLater(time.Hour, func() {})
	k.must(err, "CallLater")
	_, err = l.CallLater(2*time.Hour, func() {})
	k.must(err, "CallLater")
	early.Cancel()
	waits := k.idleWaits(l, "cancelled head timer")
	require.Greater(k, waits[0], time.Hour+59*time.Minute, "rule: a cancelled timer at the head does not shorten the poll timeout (timeouts: %v)", waits)
	require.LessOrEqual(k, waits[0], 2*time.Hour, "rule: the poll timeout is the time to the earliest live timer (timeouts: %v)", waits)
}

func kTimerLong(k *kt) {
	l := k.newLoop()
	const delay = 49 * time.Hour
	before := l.Time()
	th, err := l.CallLater(delay, func() { k.Errorf("rule: a timer two days away does not run now") })
	k.must(err, "CallLater")
	after := l.Time()
	require.GreaterOrEqual(k, th.When(), before+delay, "rule: When is Time()+delay")
	require.LessOrEqual(k, th.When(), after+delay, "rule: When is Time()+delay")

	// The poll timeout is capped (a back-end's millisecond timeout must not
	// overflow) but still a real sleep.
	waits := k.idleWaits(l, "long timer")
	require.Greater(k, waits[0], time.Hour, "rule: a far timer lets the loop sleep long (timeouts: %v)", waits)
	require.LessOrEqual(k, waits[0], 24*time.Hour, "rule: one poll waits at most a day, so millisecond timeouts cannot overflow (timeouts: %v)", waits)

	th.Cancel()
	require.True(k, th.Cancelled())
	k.runOnce(l)
}

func kTimerContext(k *kt) {
	l := k.newLoop()
	ctx, cancel := context.WithCancel(context.Background())
	ran := false
	th, err := l.CallLaterContext(ctx, 30*time.Millisecond, func(context.Context) { ran = true })
	k.must(err, "CallLaterContext")
	live := false
	_, err = l.CallLaterContext(context.Background(), 5*time.Millisecond, func(c context.Context) { live = c != nil })
	k.must(err, "CallLaterContext")
	// Cancel from another goroutine, as contexts usually are, before the
	// timer is due.
	cancelled := make(chan struct{})
	go func() { cancel(); close(cancelled) }()
	<-cancelled
	_, err = l.CallLater(60*time.Millisecond, l.Stop)
	k.must(err, "CallLater")
	require.NoError(k, k.runForever(l, "CallLaterContext"))
	require.False(k, ran, "rule: cancelling the context cancels a CallLaterContext timer")
	require.True(k, th.Cancelled(), "rule: a timer cancelled by its context reports Cancelled")
	require.True(k, live, "rule: a CallLaterContext timer with a live context runs and receives its context")
}
