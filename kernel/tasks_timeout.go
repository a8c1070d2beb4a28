package kernel

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// NoDeadline is a timeout scope's deadline when it has none (asyncio's
// when() is None); Reschedule(NoDeadline) removes the deadline. As a
// timeout, it waits without limit.
const NoDeadline = time.Duration(math.MaxInt64)

// NoTimeout is the timeout argument of Wait and AsCompleted that waits
// without limit (asyncio's timeout=None). A zero timeout does not wait.
const NoTimeout = NoDeadline

type timeoutState uint8

const (
	timeoutEntered timeoutState = iota
	timeoutExpiring
	timeoutExpired
	timeoutExited
)

// TimeoutScope is the deadline of one Timeout or TimeoutAt body
// (asyncio.Timeout): when it passes, the task running the body is
// cancelled, and once the body has returned that cancellation the scope
// returns ErrTimeout instead. A cancellation from anywhere else passes
// through unchanged, even when it arrives together with the deadline:
// the scope tells them apart by the task's count of cancellation requests
// (Task.Cancelling), as asyncio does, so scopes nest.
type TimeoutScope struct {
	loop       *Loop
	task       *taskState
	when       time.Duration
	th         TimerHandle
	armed      bool
	state      timeoutState
	cancelling int
}

// Timeout runs body under a deadline delay from now (async with
// asyncio.timeout(delay)); NoDeadline runs it without one until the body
// reschedules. It must be called from a task. It returns body's error, or
// ErrTimeout if the deadline cancelled the body.
func Timeout(co *Co, delay time.Duration, body func(s *TimeoutScope) error) error {
	when := NoDeadline
	if delay != NoDeadline {
		when = addSat(co.loop.Time(), delay)
	}
	return TimeoutAt(co, when, body)
}

// TimeoutAt is Timeout with an absolute deadline on the loop's clock
// (Loop.Time), as asyncio.timeout_at.
func TimeoutAt(co *Co, when time.Duration, body func(s *TimeoutScope) error) (err error) {
	t := co.task()
	if t == nil { // an async generator's body: the task consuming it
		t = co.loop.currentTask
	}
	if t == nil || t.fut.done() {
		return fmt.Errorf("timeout: must be used inside a task: %w", ErrInvalidState)
	}
	s := &TimeoutScope{loop: co.loop, task: t, cancelling: int(t.cancels)}
	if err := s.Reschedule(when); err != nil {
		return err
	}
	defer func() {
		if s.armed {
			s.loop.dropTimer(s.th)
			s.armed = false
		}
	}()
	return s.exit(body(s))
}

// addSat adds d to now, saturating at NoDeadline instead of wrapping.
func addSat(now, d time.Duration) time.Duration {
	if d > 0 && now > NoDeadline-d {
		return NoDeadline
	}
	return now + d
}

func (s *TimeoutScope) exit(err error) error {
	if s.armed {
		s.loop.dropTimer(s.th)
		s.armed = false
	}
	switch s.state {
	case timeoutExpiring:
		s.state = timeoutExpired
		if s.task.uncancel() <= s.cancelling && err != nil && errors.Is(err, ErrCancelled) {
			return fmt.Errorf("timeout scope: deadline passed: %w", ErrTimeout)
		}
	case timeoutEntered:
		s.state = timeoutExited
	}
	return err
}

// When returns the deadline on the loop's clock, or NoDeadline.
func (s *TimeoutScope) When() time.Duration { return s.when }

// Reschedule moves the deadline to when (NoDeadline: none); a deadline
// already past cancels the body at the next loop iteration. Rescheduling a
// scope whose deadline has fired, or that has ended, fails with
// ErrInvalidState.
func (s *TimeoutScope) Reschedule(when time.Duration) error {
	if s.state != timeoutEntered {
		return fmt.Errorf("timeout reschedule: the scope has %s: %w", s.stateName(), ErrInvalidState)
	}
	s.when = when
	if s.armed {
		s.loop.dropTimer(s.th)
		s.armed = false
	}
	if when == NoDeadline {
		return nil
	}
	th, err := s.loop.CallAt(when, s.onTimeout)
	if err != nil {
		return fmt.Errorf("timeout reschedule: %w", err)
	}
	s.th, s.armed = th, true
	return nil
}

func (s *TimeoutScope) onTimeout() {
	s.armed = false
	s.task.cancel("")
	s.state = timeoutExpiring
}

// Expired reports whether the deadline passed and cancelled the body.
func (s *TimeoutScope) Expired() bool {
	return s.state == timeoutExpiring || s.state == timeoutExpired
}

func (s *TimeoutScope) stateName() string {
	switch s.state {
	case timeoutExpiring:
		return "expired"
	case timeoutExpired, timeoutExited:
		return "ended"
	}
	return "not expired"
}

// WaitFor awaits aw for at most timeout (asyncio.wait_for, Python 3.12
// semantics): when the time is up aw is cancelled, WaitFor waits for it to
// end, and returns ErrTimeout, unless aw finished with a value anyway. A
// timeout <= 0 cancels a pending aw at once; NoTimeout waits without limit.
// Cancelling the caller cancels aw, as awaiting it would.
func WaitFor[T any](co *Co, aw AwaitableOf[T], timeout time.Duration) (T, error) {
	c := aw.core()
	if c.done() || timeout == NoTimeout {
		return aw.Await(co)
	}
	if timeout <= 0 {
		if c.loop != co.loop {
			var zero T
			return zero, fmt.Errorf("wait for: %w", ErrDifferentLoop)
		}
		w := &futureCore{loop: co.loop}
		id := c.addDone(func() {
			if !w.done() {
				w.finish(nil)
			}
		})
		aw.Cancel()
		if err := awaitCore(co, w); err != nil {
			c.removeDone(id)
			var zero T
			return zero, err
		}
		v, err := aw.Result()
		if err != nil && aw.Cancelled() {
			return v, fmt.Errorf("wait for: %w", ErrTimeout)
		}
		return v, err
	}
	// The timeout scope's logic without a scope: WaitFor's body is one
	// await, so no other WaitFor can nest in it on this task, and the task's
	// cached expiry callback saves the scope, the body closure and the
	// timer's method value (WaitFor's cost over a bare await is a benchmark).
	t := co.task()
	if t == nil {
		t = co.loop.currentTask
	}
	if t == nil || t.fut.done() {
		var zero T
		return zero, fmt.Errorf("wait for: must be used inside a task: %w", ErrInvalidState)
	}
	if t.more().waitForFire == nil {
		t.rare.waitForFire = func() {
			t.rare.waitForExpired = true
			t.cancel("")
		}
	}
	base := int(t.cancels)
	t.rare.waitForExpired = false
	var th TimerHandle
	if timeout > timerSlack && co.loop.checkUsable() == nil {
		th = co.loop.callLaterUnarmed(timeout, t.rare.waitForFire)
	} else {
		var err error
		if th, err = co.loop.CallLater(timeout, t.rare.waitForFire); err != nil {
			var zero T
			return zero, fmt.Errorf("wait for: %w", err)
		}
	}
	v, err := aw.Await(co)
	co.loop.dropTimer(th)
	if t.rare.waitForExpired {
		t.rare.waitForExpired = false
		if t.uncancel() <= base && err != nil && errors.Is(err, ErrCancelled) {
			var zero T
			return zero, fmt.Errorf("wait for: %w", ErrTimeout)
		}
	}
	return v, err
}
