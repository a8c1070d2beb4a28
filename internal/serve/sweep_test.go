package serve

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/stretchr/testify/require"
)

// fakeConn records when its deadline expired.
type fakeConn struct {
	dl      deadline
	expired time.Duration // loop clock; 0 if not yet
	onExp   func()
}

func (f *fakeConn) expire() {
	f.expired = f.dl.sw.loop.Time()
	if f.onExp != nil {
		f.onExp()
	}
}

func TestSweepExpiresOnTimeAndNeverEarly(t *testing.T) {
	l := testkit.NewLoop(t, "", kernel.WithLogger(hclog.NewNullLogger()))
	lim := Limits{IdleTimeout: 80 * time.Millisecond}
	sw := newSweep(l, lim)
	require.Equal(t, 10*time.Millisecond, sw.tick, "an eighth of the shortest timeout")
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		var short, long, pushed, gone, never fakeConn
		start := l.Time()
		for _, c := range []*fakeConn{&short, &long, &pushed, &gone, &never} {
			sw.join(&c.dl, c)
		}
		short.dl.arm(40 * time.Millisecond)
		long.dl.arm(120 * time.Millisecond)
		pushed.dl.arm(40 * time.Millisecond)
		gone.dl.arm(40 * time.Millisecond)
		// never has no deadline.
		// Push one back before it is due, and take one out.
		if err := co.Sleep(20 * time.Millisecond); err != nil {
			return struct{}{}, err
		}
		pushedAt := l.Time()
		pushed.dl.arm(100 * time.Millisecond)
		gone.dl.leave()
		gone.dl.leave() // idempotent
		err := testkit.Until(co, 2*time.Second, func() bool { return short.expired != 0 && long.expired != 0 && pushed.expired != 0 })
		if err != nil {
			return struct{}{}, err
		}
		require.GreaterOrEqual(t, short.expired-start, 40*time.Millisecond)
		require.GreaterOrEqual(t, long.expired-start, 120*time.Millisecond)
		require.GreaterOrEqual(t, pushed.expired-pushedAt, 100*time.Millisecond, "re-arming pushes the deadline back")
		require.Less(t, short.expired, long.expired)
		require.Zero(t, gone.expired, "a connection that left is not expired")
		require.Zero(t, never.expired, "no deadline, no expiry")
		require.Len(t, sw.conns, 4)
		for i, d := range sw.conns {
			require.Equal(t, i, d.slot, "slots follow swap-removal")
		}
		return struct{}{}, nil
	})
	require.NoError(t, err)
}

// An expiry that closes connections (which leave the sweep) during the
// sweep must not skip or repeat any other connection.
func TestSweepExpiryThatLeaves(t *testing.T) {
	l := testkit.NewLoop(t, "", kernel.WithLogger(hclog.NewNullLogger()))
	sw := newSweep(l, Limits{IdleTimeout: 40 * time.Millisecond})
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		conns := make([]*fakeConn, 100)
		fired := 0
		for i := range conns {
			c := &fakeConn{}
			c.onExp = func() { fired++; c.dl.leave() }
			conns[i] = c
			sw.join(&c.dl, c)
			c.dl.arm(40 * time.Millisecond)
		}
		if err := testkit.Until(co, 2*time.Second, func() bool { return len(sw.conns) == 0 }); err != nil {
			return struct{}{}, err
		}
		require.Equal(t, 100, fired, "each connection expired exactly once")
		// With nothing registered the sweep stops re-arming itself.
		if err := co.Sleep(3 * sw.tick); err != nil {
			return struct{}{}, err
		}
		require.False(t, sw.armed, "an idle sweep holds no timer")
		return struct{}{}, nil
	})
	require.NoError(t, err)
}

func TestEventLogBudget(t *testing.T) {
	var lines []string
	logger := hclog.New(&hclog.LoggerOptions{Output: writerFunc(func(p []byte) { lines = append(lines, string(p)) }), Level: hclog.Info})
	e := eventLog{logger: logger}
	for i := 0; i < 3*logBudget; i++ {
		e.event(time.Second, true, "serve http: header timeout", nil)
	}
	require.Len(t, lines, logBudget, "no more than the budget within a second")
	e.flush(2*time.Second + time.Millisecond)
	require.Len(t, lines, logBudget+1)
	require.Contains(t, lines[logBudget], "40 more connection limit events not logged")
	e.event(2*time.Second+2*time.Millisecond, false, "serve http: idle keep-alive timeout", nil)
	require.Len(t, lines, logBudget+2, "a new second has a new budget")
}

type writerFunc func(p []byte)

func (w writerFunc) Write(p []byte) (int, error) { w(p); return len(p), nil }

// BenchmarkDeadlineRearm is what a request costs its connection's idle
// timer here (a store), against BenchmarkTimerPerRequest, the timer-heap
// insertion and cancellation a loop timer per request would cost.
func BenchmarkDeadlineRearm(b *testing.B) {
	l := testkit.NewLoop(b, "", kernel.WithLogger(hclog.NewNullLogger()))
	sw := newSweep(l, DefaultLimits("http"))
	conns := make([]fakeConn, 10000)
	for i := range conns {
		sw.join(&conns[i].dl, &conns[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		conns[i%len(conns)].dl.arm(DefaultHTTPIdleTimeout)
	}
}

func BenchmarkTimerPerRequest(b *testing.B) {
	l := testkit.NewLoop(b, "", kernel.WithLogger(hclog.NewNullLogger()))
	// 10000 connections' timers in the heap, as the alternative would hold.
	hs := make([]kernel.TimerHandle, 10000)
	for i := range hs {
		h, err := l.CallLater(DefaultHTTPIdleTimeout+time.Duration(i), func() {})
		require.NoError(b, err)
		hs[i] = h
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % len(hs)
		hs[k].Cancel()
		h, _ := l.CallLater(DefaultHTTPIdleTimeout, func() {})
		hs[k] = h
	}
}

// BenchmarkSweep10k is one tick over 10,000 connections, none due: the
// price of the coarse sweep, paid at most once a tick (1 s by default).
func BenchmarkSweep10k(b *testing.B) {
	l := testkit.NewLoop(b, "", kernel.WithLogger(hclog.NewNullLogger()))
	sw := newSweep(l, DefaultLimits("http"))
	conns := make([]fakeConn, 10000)
	for i := range conns {
		sw.join(&conns[i].dl, &conns[i])
		conns[i].dl.arm(time.Hour)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sw.stop()
		sw.run()
	}
	b.StopTimer()
	sw.stop()
}
