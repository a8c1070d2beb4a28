package conformance

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopkernel/loopkernel/sdk"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Rules the tests of this package look for by name; the rest are written
// where they are checked.
const (
	ruleLevelRead      = "level-triggered read readiness is reported on every Wait until drained"
	ruleWakeInterrupts = "Wake from another goroutine interrupts an indefinite Wait"
	ruleWakeBeforeWait = "a Wake before Wait makes the next Wait return promptly"
)

// Messages for the plain calls every case makes: a failure there still names
// the rule that was broken.
const (
	msgRegister   = "rule: Register of an open socket or pipe under a free token succeeds"
	msgModify     = "rule: Modify of a registered token succeeds"
	msgUnregister = "rule: Unregister of a registered token succeeds"
	msgWake       = "rule: Wake succeeds on an open selector"
	msgClose      = "rule: Close succeeds once"
)

// SelectorSuite returns the selector contract: what sdk.Selector's doc
// comments promise, checked against real descriptors (socketpairs, pipes, a
// loopback TCP socket, a regular file), and how late a Wait may be against
// a reference measured in the same run (latency.go). Every case's name
// starts with "selector/", as the other suites' start with theirs.
func SelectorSuite() Suite {
	return Suite{Name: "selector", Cases: append([]Case{
		{Name: "selector/read-readiness/socket", Run: caseReadSocket},
		{Name: "selector/read-readiness/pipe", Run: caseReadPipe},
		{Name: "selector/write-readiness/socket", Run: func(c *C) { a, b := c.socketpair(); caseWrite(c, a, b) }},
		{Name: "selector/write-readiness/pipe", Run: func(c *C) { r, w := c.pipe(); caseWrite(c, w, r) }},
		{Name: "selector/level-triggered/read", Run: caseLevelRead},
		{Name: "selector/level-triggered/write", Run: caseLevelWrite},
		{Name: "selector/eof-is-readable", Run: caseEOF},
		{Name: "selector/peer-close", Run: casePeerClose},
		{Name: "selector/error-event", Run: caseErrorEvent},
		{Name: "selector/timeout/zero", Run: caseTimeoutZero},
		{Name: "selector/timeout/honoured", Run: caseTimeoutHonoured},
		{Name: "selector/wake/interrupts-wait", Run: caseWakeInterrupts},
		{Name: "selector/wake/before-wait", Run: caseWakeBeforeWait},
		{Name: "selector/wake/coalesces", Run: caseWakeCoalesces},
		{Name: "selector/wake/concurrent", Run: caseWakeConcurrent},
		{Name: "selector/many-fds", Needs: "fds:1000", Run: caseManyFDs},
		{Name: "selector/small-buffer", Run: caseSmallBuffer},
		{Name: "selector/unregister-during-dispatch", Run: caseUnregisterDuringDispatch},
		{Name: "selector/stale-tokens", Run: caseStaleTokens},
		{Name: "selector/closed-fds", Run: caseClosedFDs},
		{Name: "selector/duplicate-registration", Run: caseDuplicate},
		{Name: "selector/unknown-token", Run: caseUnknownToken},
		{Name: "selector/modify-interest", Run: caseModify},
		{Name: "selector/interest-zero", Run: caseInterestZero},
		{Name: "selector/descriptor-ownership", Run: caseOwnership},
		{Name: "selector/closed-selector", Run: caseClosedSelector},
		{Name: "selector/regular-file", Run: caseRegularFile},
	}, latencyCases()...)}
}

func caseReadSocket(c *C) {
	s := c.NewSelector()
	a, b := c.socketpair()
	// A generation with the high bit set: the whole 64-bit token must survive.
	tok := sdk.MakeToken(3, 0xfffffff0)
	require.NoError(c, s.Register(a, tok, sdk.Read), "rule: registering a socket for Read succeeds")
	c.notReported(s, tok, 0, "an idle descriptor is not reported")
	c.write(b, []byte("x"))
	ev := c.expect(s, tok, sdk.Read, "a readable descriptor is reported with Read under its full 64-bit token")
	require.Zero(c, ev&sdk.Write, "rule: conditions outside the interest set are not reported: got %v", ev)
}

func caseReadPipe(c *C) {
	s := c.NewSelector()
	r, w := c.pipe()
	tok := sdk.MakeToken(1, 1)
	require.NoError(c, s.Register(r, tok, sdk.Read), "rule: registering a pipe for Read succeeds")
	c.notReported(s, tok, 0, "an idle descriptor is not reported")
	c.write(w, []byte("x"))
	c.expect(s, tok, sdk.Read, "a readable pipe is reported with Read")
}

// caseWrite checks writability on w, whose peer is r.
func caseWrite(c *C, w, r int) {
	s := c.NewSelector()
	tok := sdk.MakeToken(2, 7)
	require.NoError(c, s.Register(w, tok, sdk.Write), "rule: registering for Write succeeds")
	ev := c.expect(s, tok, sdk.Write, "a writable descriptor is reported with Write")
	require.Zero(c, ev&sdk.Read, "rule: conditions outside the interest set are not reported: got %v", ev)
	c.fill(w)
	c.notReported(s, tok, 20*time.Millisecond, "a descriptor whose buffer is full is not reported writable")
	c.drain(r)
	c.expect(s, tok, sdk.Write, "writability is reported again once the peer drains the buffer")
}

// levelRounds is how many consecutive Waits a level-triggered check makes;
// one miss is forgiven because an interrupted Wait legitimately returns
// nothing.
const levelRounds = 6

// levelWait is the timeout of each of those Waits. The descriptor is ready,
// so a working selector returns at once; it is under the plugin placement's
// wait slice (one second) so that the host, which repeats a slice that came
// back empty, cannot hide a plugin that drops events.
const levelWait = 500 * time.Millisecond

func countReported(c *C, s sdk.Selector, tok sdk.Token, want sdk.Events) (missed int) {
	buf := make([]sdk.Event, 16)
	for i := 0; i < levelRounds; i++ {
		if c.waitOnce(s, buf, levelWait)[tok]&want == 0 {
			missed++
		}
	}
	return missed
}

func caseLevelRead(c *C) {
	s := c.NewSelector()
	a, b := c.socketpair()
	tok := sdk.MakeToken(4, 1)
	require.NoError(c, s.Register(a, tok, sdk.Read), msgRegister)
	c.write(b, []byte("x"))
	c.expect(s, tok, sdk.Read, "a readable descriptor is reported with Read")
	missed := countReported(c, s, tok, sdk.Read)
	require.LessOrEqual(c, missed, 1, "rule: %s: %d of %d Waits did not report the unread byte", ruleLevelRead, missed, levelRounds)
	c.drain(a)
	c.notReported(s, tok, 0, "a drained descriptor is no longer reported readable")
}

func caseLevelWrite(c *C) {
	s := c.NewSelector()
	a, _ := c.socketpair()
	tok := sdk.MakeToken(4, 2)
	require.NoError(c, s.Register(a, tok, sdk.Write), msgRegister)
	missed := countReported(c, s, tok, sdk.Write)
	require.LessOrEqual(c, missed, 1, "rule: level-triggered write readiness is reported on every Wait while writable: %d of %d Waits missed it", missed, levelRounds)
}

func caseEOF(c *C) {
	s := c.NewSelector()
	a, b := c.socketpair()
	tok := sdk.MakeToken(5, 1)
	require.NoError(c, s.Register(a, tok, sdk.Read), msgRegister)
	c.fixture("shutdown", unix.Shutdown(b, unix.SHUT_WR))
	c.expect(s, tok, sdk.Read, "EOF (the peer shut down writing) is reported as Read")
	n, err := unix.Read(a, make([]byte, 8))
	c.fixture("read at EOF", err)
	require.Zero(c, n, "fixture: read at EOF returns 0")
	missed := countReported(c, s, tok, sdk.Read)
	require.LessOrEqual(c, missed, 1, "rule: EOF stays readable on every Wait: %d of %d Waits missed it", missed, levelRounds)
}

func casePeerClose(c *C) {
	s := c.NewSelector()
	a, b := c.socketpair()
	r, w := c.pipe()
	ta, tr := sdk.MakeToken(6, 1), sdk.MakeToken(7, 1)
	require.NoError(c, s.Register(a, ta, sdk.Read), msgRegister)
	require.NoError(c, s.Register(r, tr, sdk.Read), msgRegister)
	c.closeFD(b)
	c.closeFD(w)
	ev := c.expect(s, ta, sdk.Read|sdk.Hangup, "a socket whose peer closed is reported as Read or Hangup")
	c.Logf("socket peer closed: %v", ev)
	ev = c.expect(s, tr, sdk.Read|sdk.Hangup, "a pipe whose writer closed is reported as Read or Hangup")
	c.Logf("pipe writer closed: %v", ev)
}

func caseErrorEvent(c *C) {
	s := c.NewSelector()
	fd := c.refusedConnect()
	tok := sdk.MakeToken(8, 1)
	require.NoError(c, s.Register(fd, tok, sdk.Write), "rule: registering a connecting socket for Write succeeds")
	ev := c.expect(s, tok, sdk.Write|sdk.Error, "a failed non-blocking connect is reported (Error or Write) so the owner can read SO_ERROR")
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	c.fixture("getsockopt SO_ERROR", err)
	c.Logf("reported %v, SO_ERROR=%v", ev, unix.Errno(soerr))
}

func caseTimeoutZero(c *C) {
	s := c.NewSelector()
	a, _ := c.socketpair()
	require.NoError(c, s.Register(a, sdk.MakeToken(9, 1), sdk.Read), msgRegister)
	buf := make([]sdk.Event, 8)
	start := time.Now()
	n, err := s.Wait(buf, 0)
	el := time.Since(start)
	require.NoError(c, err, "rule: Wait succeeds on a healthy selector")
	require.Zero(c, n, "rule: an idle descriptor is not reported")
	require.Less(c, el, time.Second, "rule: a zero timeout polls without blocking (took %v)", el)
}

func caseTimeoutHonoured(c *C) {
	s := c.NewSelector()
	a, _ := c.socketpair()
	require.NoError(c, s.Register(a, sdk.MakeToken(10, 1), sdk.Read), msgRegister)
	buf := make([]sdk.Event, 8)
	for _, tc := range []struct {
		d, early     time.Duration
		tries, limit int
	}{
		{50 * time.Millisecond, time.Millisecond, 5, 3},
		// Catches a conversion to milliseconds that rounds down: such a
		// Wait returns about 0.9ms early, which a loaded machine's
		// scheduling delay often hides, so it gets more tries.
		{1900 * time.Microsecond, 100 * time.Microsecond, 15, 2},
	} {
		early := earlyWaits(tc.d, tc.early, tc.tries, tc.limit, func() time.Duration {
			start := time.Now()
			n, err := s.Wait(buf, tc.d)
			el := time.Since(start)
			require.NoError(c, err, "rule: Wait succeeds on a healthy selector")
			require.Zero(c, n, "rule: an idle descriptor is not reported")
			require.Less(c, el, tc.d+2*time.Second, "rule: Wait returns soon after its timeout: a %v timeout took %v", tc.d, el)
			return el
		})
		require.Empty(c, early, "rule: Wait does not return before its timeout (sub-millisecond parts round up): a %v timeout returned after %v", tc.d, early)
	}
}

// waitRescued calls Wait(-1) on the case goroutine. If it has not returned
// after settle, a byte is written to a rescue pipe registered for the
// purpose, so a selector that ignores Wake fails the case instead of hanging
// it. before runs on the helper goroutine first (e.g. a Wake). It returns
// what was observed: whether the rescue byte had to be written, how long
// Wait took, and the batch it returned (so a failure can say what happened
// rather than guess).
func waitRescued(c *C, s sdk.Selector, before func() error) (w rescueWait, beforeErr error) {
	rr, rw := c.pipe()
	rescue := sdk.MakeToken(0xfffe, 0xfffe)
	require.NoError(c, s.Register(rr, rescue, sdk.Read), "rule: registering a pipe for Read succeeds")
	returned := make(chan struct{})
	helper := make(chan error, 1)
	var rescued atomic.Bool
	go func() {
		var err error
		if before != nil {
			err = before()
		}
		select {
		case <-returned:
		case <-time.After(settle):
			rescued.Store(true)
			unix.Write(rw, []byte{1})
		}
		helper <- err
	}()
	start := time.Now()
	w.batch = c.waitOnce(s, make([]sdk.Event, 8), -1)
	w.took = time.Since(start)
	close(returned)
	beforeErr = <-helper
	w.rescued = rescued.Load()
	require.NoError(c, s.Unregister(rescue), msgUnregister)
	return w, beforeErr
}

// rescueWait is what waitRescued observed.
type rescueWait struct {
	rescued bool
	took    time.Duration
	batch   map[sdk.Token]sdk.Events
}

func (w rescueWait) String() string {
	if w.rescued {
		return fmt.Sprintf("Wait was still blocked %v later and returned only when the rescue pipe was written, after %v, with %v", settle, w.took.Round(time.Millisecond), w.batch)
	}
	return fmt.Sprintf("Wait returned after %v with %v", w.took.Round(time.Millisecond), w.batch)
}

func caseWakeInterrupts(c *C) {
	s := c.NewSelector()
	w, err := waitRescued(c, s, func() error {
		time.Sleep(20 * time.Millisecond) // let Wait block first
		return s.Wake()
	})
	require.NoError(c, err, "rule: Wake succeeds on an open selector")
	require.False(c, w.rescued, "rule: %s: %v", ruleWakeInterrupts, w)
}

func caseWakeBeforeWait(c *C) {
	s := c.NewSelector()
	require.NoError(c, s.Wake(), "rule: Wake succeeds on an open selector")
	w, _ := waitRescued(c, s, nil)
	require.False(c, w.rescued, "rule: %s: %v", ruleWakeBeforeWait, w)
}

func caseWakeCoalesces(c *C) {
	s := c.NewSelector()
	for i := 0; i < 100; i++ {
		require.NoError(c, s.Wake(), "rule: Wake succeeds on an open selector")
	}
	buf := make([]sdk.Event, 8)
	start := time.Now()
	got := c.waitOnce(s, buf, settle)
	took := time.Since(start)
	require.Less(c, took, settle, "rule: %s: after 100 Wakes, a Wait(%v) returned only after %v, with %v", ruleWakeBeforeWait, settle, took, got)
	// The next Wait must block for its timeout: all 100 wakes were consumed.
	// (A Wait that blocks for ever instead is the contract checker's to
	// report: it breaks the timeout rule, not this one.)
	const d = 100 * time.Millisecond
	var batches []map[sdk.Token]sdk.Events
	early := earlyWaits(d, time.Millisecond, 5, 3, func() time.Duration {
		start := time.Now()
		batches = append(batches, c.waitOnce(s, buf, d))
		return time.Since(start)
	})
	require.Empty(c, early, "rule: extra wakes coalesce: one Wait consumes every Wake made before it: later %v Waits with nothing ready returned after %v, with %v", d, early, batches)
}

// caseWakeConcurrent hammers Wake from other goroutines while the loop
// polls, then checks a wake-up still gets through: a selector that clears its
// "wake pending" mark before draining its wake descriptor ends up with the
// mark set and nothing to drain, after which every Wake is swallowed.
func caseWakeConcurrent(c *C) {
	s := c.NewSelector()
	const goroutines, spin = 2, 200 * time.Millisecond
	var wg sync.WaitGroup
	var stop atomic.Bool
	var calls, failures atomic.Int64
	var firstErr atomic.Value
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The context ends them too if the case is abandoned with its
			// goroutine stuck in Wait: they must not spin for ever.
			for !stop.Load() && c.Context().Err() == nil {
				calls.Add(1)
				if err := s.Wake(); err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	buf := make([]sdk.Event, 8)
	// At least minPolls polls however slow each is (a plugin's exchange on
	// a loaded machine), so the burst meets many Waits in either placement.
	const minPolls = 100
	for i, end := 0, time.Now().Add(spin); i < minPolls || time.Now().Before(end); i++ {
		c.waitOnce(s, buf, 0)
	}
	stop.Store(true)
	wg.Wait()
	c.Logf("%d Wake calls from %d goroutines", calls.Load(), goroutines)
	require.Zero(c, failures.Load(), "rule: Wake is safe from any goroutine: %d calls failed, first: %v", failures.Load(), firstErr.Load())
	c.waitOnce(s, buf, 0) // consume what the burst left pending
	require.NoError(c, s.Wake(), msgWake)
	w, _ := waitRescued(c, s, nil)
	require.False(c, w.rescued, "rule: Wake keeps working after a burst from many goroutines (%s): %v", ruleWakeBeforeWait, w)
}

func caseManyFDs(c *C) {
	const pairs = 1000
	c.ensureNoFile(2 * pairs)
	s := c.NewSelector()
	peers := make([]int, pairs)
	for i := range peers {
		a, b := c.socketpair()
		peers[i] = b
		require.NoError(c, s.Register(a, sdk.MakeToken(uint32(i), 1), sdk.Read), "rule: a selector without MaxFDs accepts %d registrations (failed at %d)", pairs, i)
	}
	for i := 0; i < pairs; i += 2 {
		c.write(peers[i], []byte("x"))
	}
	seen := map[sdk.Token]bool{}
	buf := make([]sdk.Event, 1024)
	deadline := time.Now().Add(settle)
	for len(seen) < pairs/2 && time.Now().Before(deadline) {
		for tok, ev := range c.waitOnce(s, buf, time.Until(deadline)) {
			require.Equal(c, uint32(0), tok.Slot()%2, "rule: only ready descriptors are reported: idle token %v reported with %v", tok, ev)
			require.Equal(c, uint32(1), tok.Gen(), "rule: events carry the token they were registered with: got %v", tok)
			seen[tok] = true
		}
	}
	require.Len(c, seen, pairs/2, "rule: every ready registration among %d is reported", pairs)
}

func caseSmallBuffer(c *C) {
	const pairs, size = 10, 3
	s := c.NewSelector()
	for i := 0; i < pairs; i++ {
		a, b := c.socketpair()
		require.NoError(c, s.Register(a, sdk.MakeToken(uint32(i), 1), sdk.Read), msgRegister)
		c.write(b, []byte("x"))
	}
	seen := map[sdk.Token]bool{}
	buf := make([]sdk.Event, size)
	for round := 0; round < 40 && len(seen) < pairs; round++ {
		for tok := range c.waitOnce(s, buf, settle) {
			seen[tok] = true
		}
	}
	require.Len(c, seen, pairs, "rule: a full events buffer does not starve registrations: with %d ready and room for %d, 40 Waits reported only %d tokens", pairs, size, len(seen))
}

func caseUnregisterDuringDispatch(c *C) {
	s := c.NewSelector()
	a1, b1 := c.socketpair()
	a2, b2 := c.socketpair()
	t1, t2 := sdk.MakeToken(11, 1), sdk.MakeToken(12, 1)
	require.NoError(c, s.Register(a1, t1, sdk.Read), msgRegister)
	require.NoError(c, s.Register(a2, t2, sdk.Read), msgRegister)
	c.write(b1, []byte("x"))
	c.write(b2, []byte("x"))
	buf := make([]sdk.Event, 8)
	deadline := time.Now().Add(settle)
	for {
		got := c.waitOnce(s, buf, time.Until(deadline))
		if got[t1] != 0 && got[t2] != 0 {
			break
		}
		require.True(c, time.Now().Before(deadline), "rule: every ready registration is reported in one batch: last batch %v", got)
	}
	// Dispatching t1's event unregisters t2, whose event is in the same batch.
	require.NoError(c, s.Unregister(t2), "rule: Unregister of a registered token succeeds")
	for i := 0; i < 3; i++ {
		got := c.waitOnce(s, buf, 0)
		require.NotContains(c, got, t2, "rule: once Unregister returns, Wait never reports the token, even one whose event was already dispatched")
	}
	c.expect(s, t1, sdk.Read, "other registrations are unaffected by an Unregister")
	require.NoError(c, s.Unregister(t1), msgUnregister)
	c.notReported(s, t1, 0, "once Unregister returns, Wait never reports the token")
}

func caseStaleTokens(c *C) {
	s := c.NewSelector()
	a, b := c.socketpair()
	old, cur := sdk.MakeToken(13, 1), sdk.MakeToken(13, 2)
	require.NoError(c, s.Register(a, old, sdk.Read), msgRegister)
	c.write(b, []byte("x"))
	c.expect(s, old, sdk.Read, "a readable descriptor is reported with Read")
	require.NoError(c, s.Unregister(old), msgUnregister)
	require.NoError(c, s.Register(a, cur, sdk.Read), "rule: a descriptor can be registered again after Unregister")
	buf := make([]sdk.Event, 8)
	for i := 0; i < 3; i++ {
		got := c.waitOnce(s, buf, settle)
		require.NotContains(c, got, old, "rule: a re-registered descriptor's events carry only the new token, never the stale one")
	}
	c.expect(s, cur, sdk.Read, "a re-registered descriptor is reported under its new token")
	// The kernel's order: unregister, close, and a new descriptor that will
	// most likely get the same number is registered under the next generation.
	require.NoError(c, s.Unregister(cur), msgUnregister)
	c.closeFD(a)
	c.closeFD(b)
	a2, b2 := c.socketpair()
	c.Logf("old fd %d, new fd %d", a, a2)
	next := sdk.MakeToken(13, 3)
	require.NoError(c, s.Register(a2, next, sdk.Read), msgRegister)
	c.write(b2, []byte("x"))
	for i := 0; i < 3; i++ {
		got := c.waitOnce(s, buf, settle)
		require.NotContains(c, got, old, "rule: a reused descriptor number's events carry only the new token")
		require.NotContains(c, got, cur, "rule: a reused descriptor number's events carry only the new token")
	}
	c.expect(s, next, sdk.Read, "a reused descriptor number is reported under its new token")
}

func caseClosedFDs(c *C) {
	s := c.NewSelector()
	a, _ := c.socketpair()
	tok := sdk.MakeToken(14, 1)
	require.NoError(c, s.Register(a, tok, sdk.Read|sdk.Write), msgRegister)
	c.closeFD(a) // behind the selector's back: the kernel never does this, a buggy caller might
	err := s.Unregister(tok)
	c.Logf("Unregister after close: %v", err)
	require.ErrorIs(c, s.Unregister(tok), sdk.ErrNotRegistered, "rule: Unregister forgets the token even when its descriptor was already closed")
	c.notReported(s, tok, 0, "once Unregister returns, Wait never reports the token")

	r, _ := c.pipe()
	c.closeFD(r)
	tok2 := sdk.MakeToken(15, 1)
	err = s.Register(r, tok2, sdk.Read)
	require.Error(c, err, "rule: registering a closed descriptor fails")
	c.Logf("Register of a closed fd: %v", err)
	require.ErrorIs(c, s.Unregister(tok2), sdk.ErrNotRegistered, "rule: a failed Register leaves nothing registered")
	require.Error(c, s.Register(-1, tok2, sdk.Read), "rule: registering a negative descriptor fails")
}

func caseDuplicate(c *C) {
	s := c.NewSelector()
	a, b := c.socketpair()
	x, y := c.socketpair()
	t1, t2 := sdk.MakeToken(16, 1), sdk.MakeToken(17, 1)
	require.NoError(c, s.Register(a, t1, sdk.Read), msgRegister)
	require.ErrorIs(c, s.Register(x, t1, sdk.Read), sdk.ErrExists, "rule: registering a token that is already registered fails with ErrExists")
	require.ErrorIs(c, s.Register(a, t2, sdk.Read), sdk.ErrExists, "rule: registering a descriptor that is already registered fails with ErrExists")
	require.ErrorIs(c, s.Unregister(t2), sdk.ErrNotRegistered, "rule: a failed Register leaves nothing registered")
	c.write(b, []byte("x"))
	c.expect(s, t1, sdk.Read, "a failed duplicate Register leaves the original registration working")
	require.NoError(c, s.Register(x, t2, sdk.Read), "rule: a descriptor refused as a duplicate token can be registered under a free token")
	c.write(y, []byte("x"))
	c.expect(s, t2, sdk.Read, "a readable descriptor is reported with Read")
}

func caseUnknownToken(c *C) {
	s := c.NewSelector()
	tok := sdk.MakeToken(18, 1)
	require.ErrorIs(c, s.Modify(tok, sdk.Read), sdk.ErrNotRegistered, "rule: Modify of an unknown token fails with ErrNotRegistered")
	require.ErrorIs(c, s.Unregister(tok), sdk.ErrNotRegistered, "rule: Unregister of an unknown token fails with ErrNotRegistered")
	a, _ := c.socketpair()
	require.NoError(c, s.Register(a, tok, sdk.Read), msgRegister)
	require.ErrorIs(c, s.Modify(sdk.MakeToken(18, 2), sdk.Read), sdk.ErrNotRegistered, "rule: a token is matched on slot and generation: another generation is unknown")
	require.NoError(c, s.Unregister(tok), msgUnregister)
	require.ErrorIs(c, s.Modify(tok, sdk.Read), sdk.ErrNotRegistered, "rule: Modify of an unregistered token fails with ErrNotRegistered")
	require.ErrorIs(c, s.Unregister(tok), sdk.ErrNotRegistered, "rule: a second Unregister fails with ErrNotRegistered")
}

func caseModify(c *C) {
	s := c.NewSelector()
	a, b := c.socketpair()
	tok := sdk.MakeToken(19, 1)
	c.write(b, []byte("x")) // a is now readable and writable
	require.NoError(c, s.Register(a, tok, sdk.Read), msgRegister)
	ev := c.expect(s, tok, sdk.Read, "a readable descriptor is reported with Read")
	require.Zero(c, ev&sdk.Write, "rule: conditions outside the interest set are not reported: got %v", ev)
	require.NoError(c, s.Modify(tok, sdk.Write), "rule: Modify of a registered token succeeds")
	ev = c.expect(s, tok, sdk.Write, "Modify replaces the interest set: Write is reported after Modify(Write)")
	require.Zero(c, ev&sdk.Read, "rule: Modify replaces the interest set: Read is not reported after Modify(Write), got %v", ev)
	require.NoError(c, s.Modify(tok, sdk.Read|sdk.Write), msgModify)
	ev = c.expect(s, tok, sdk.Read, "Modify replaces the interest set: Read is reported after Modify(Read|Write)")
	require.Equal(c, sdk.Read|sdk.Write, ev&(sdk.Read|sdk.Write), "rule: one event per ready token, conditions merged: got %v", ev)
}

func caseInterestZero(c *C) {
	s := c.NewSelector()
	a, b := c.socketpair()
	tok := sdk.MakeToken(20, 1)
	c.write(b, []byte("x"))
	require.NoError(c, s.Register(a, tok, 0), "rule: registering with an empty interest set succeeds")
	c.notReported(s, tok, 20*time.Millisecond, "an empty interest set reports nothing")
	require.NoError(c, s.Modify(tok, sdk.Read), msgModify)
	c.expect(s, tok, sdk.Read, "a registration made with no interest reports once Modify gives it some")
	require.NoError(c, s.Modify(tok, 0), msgModify)
	c.notReported(s, tok, 20*time.Millisecond, "Modify to an empty interest set stops all reports")
	c.closeFD(b)
	c.notReported(s, tok, 20*time.Millisecond, "an empty interest set reports nothing, not even a hangup")
	// Nor may the hangup end Wait early with nothing to show (a busy loop).
	const d = 50 * time.Millisecond
	buf := make([]sdk.Event, 8)
	early := earlyWaits(d, time.Millisecond, 5, 3, func() time.Duration { return c.timedWait(s, buf, d) })
	require.Empty(c, early, "rule: a hung-up registration with an empty interest set does not end Wait early: %v Waits returned after %v", d, early)
	require.NoError(c, s.Modify(tok, sdk.Read), msgModify)
	c.expect(s, tok, sdk.Read|sdk.Hangup, "a paused registration whose peer closed reports once resumed")
}

func caseOwnership(c *C) {
	s := c.NewSelector()
	a, b := c.socketpair()
	tok := sdk.MakeToken(21, 1)
	require.NoError(c, s.Register(a, tok, sdk.Read), msgRegister)
	require.NoError(c, s.Unregister(tok), msgUnregister)
	_, err := unix.FcntlInt(uintptr(a), unix.F_GETFD, 0)
	require.NoError(c, err, "rule: Unregister never closes the descriptor; it stays the caller's")
	require.NoError(c, s.Register(a, tok, sdk.Read), msgRegister)
	require.NoError(c, s.Close(), msgClose)
	_, err = unix.FcntlInt(uintptr(a), unix.F_GETFD, 0)
	require.NoError(c, err, "rule: Close never closes the registered descriptors")
	c.write(b, []byte("x"))
	require.Equal(c, 1, c.drain(a), "rule: Close never closes or consumes the registered descriptors")
}

func caseClosedSelector(c *C) {
	s := c.NewSelector()
	a, b := c.socketpair()
	tok := sdk.MakeToken(22, 1)
	require.NoError(c, s.Register(a, tok, sdk.Read), msgRegister)
	require.NoError(c, s.Close(), "rule: Close succeeds once")
	const rule = "rule: every call after Close fails with ErrClosed"
	require.ErrorIs(c, s.Register(b, sdk.MakeToken(23, 1), sdk.Read), sdk.ErrSelectorClosed, rule+" (Register)")
	require.ErrorIs(c, s.Modify(tok, sdk.Write), sdk.ErrSelectorClosed, rule+" (Modify)")
	require.ErrorIs(c, s.Unregister(tok), sdk.ErrSelectorClosed, rule+" (Unregister)")
	_, err := s.Wait(make([]sdk.Event, 8), 0)
	require.ErrorIs(c, err, sdk.ErrSelectorClosed, rule+" (Wait)")
	require.ErrorIs(c, s.Wake(), sdk.ErrSelectorClosed, rule+" (Wake)")
	errc := make(chan error, 1)
	go func() { errc <- s.Wake() }()
	require.ErrorIs(c, <-errc, sdk.ErrSelectorClosed, rule+" (Wake from another goroutine)")
	require.ErrorIs(c, s.Close(), sdk.ErrSelectorClosed, rule+" (Close)")
}

func caseRegularFile(c *C) {
	s := c.NewSelector()
	fd := c.regularFile()
	tok := sdk.MakeToken(24, 1)
	err := s.Register(fd, tok, sdk.Read|sdk.Write)
	if c.Capabilities().RegularFiles {
		require.NoError(c, err, "rule: a selector declaring RegularFiles accepts a regular file")
		ev := c.expect(s, tok, sdk.Read, "a regular file is always reported readable")
		require.NotZero(c, ev&sdk.Write, "rule: a regular file is always reported writable when asked: got %v", ev)
		return
	}
	require.Error(c, err, "rule: a selector not declaring RegularFiles refuses a regular file at Register")
	require.NotErrorIs(c, err, sdk.ErrExists, "rule: a refused regular file is not reported as a duplicate")
	c.Logf("regular file refused: %v", err)
	require.ErrorIs(c, s.Unregister(tok), sdk.ErrNotRegistered, "rule: a failed Register leaves nothing registered")
}
