package conformance

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// The contract checker. Every selector a case builds (C.NewSelector) is
// wrapped in a checked selector, so the contract is held on every Wait of
// every case, whatever the case body itself looks at: a kernel or net case
// sees a selector's events only as callbacks that run or do not, and a
// selector that reports a wrong token or an idle descriptor would otherwise
// show up there as a vague timeout, or not at all. What it checks:
//
//   - every event names a live registration (registered, not yet
//     unregistered), once per batch, with at least one condition, none
//     outside the registration's interest set (Error and Hangup aside), and
//     none for an empty interest set;
//   - every reported condition holds: poll(2) on the descriptor, right after
//     Wait returns, agrees that it is readable, writable or hung up (on the
//     loop goroutine, before anything can consume the readiness; Error is
//     not checked, since it also reports a registration the selector could
//     not make);
//   - a Wait ends once its timeout has passed, once a Wake came, or once a
//     registration has been ready for a while; one that does not is
//     reported with what was observed, woken by the checker, and if even
//     that does not end it the case is abandoned at once rather than left
//     to its time limit;
//   - Wait does not panic (a panic in process is what a crash is out of
//     process).
//
// Each broken rule is reported once per case, by the first observation.

// The rules the checker holds, shared with the cases that check them
// directly.
const (
	ruleLiveTokens   = "every event names a live registration (registered and not yet unregistered)"
	ruleOnePerToken  = "one event per ready token per Wait, conditions merged"
	ruleConditions   = "an event reports at least one condition"
	ruleInterest     = "conditions outside the interest set are not reported (Error and Hangup aside)"
	ruleInterestNone = "a registration with an empty interest set is never reported"
	ruleReady        = "every event belongs to a registration that is ready"
	ruleTimeoutEnds  = "Wait returns once its timeout has passed"
	ruleReadyEnds    = "Wait returns when a registration is ready"
	ruleWaitFills    = "Wait fills at most len(events) entries"
)

// overrun is how long past its deadline (its timeout, a Wake, a ready
// registration) the checker lets a Wait stay blocked before calling it
// stuck: far above a scheduling delay on a loaded machine, and below a
// plugin supervisor's default health deadline (plugin.Spec.ReplyTimeout,
// 5s) so that the rule is named rather than the restart. Lateness below it
// is measured against a reference instead (latency.go).
const overrun = 3 * time.Second

// overrunAfterFailure replaces overrun once the run has failed a case: the
// verdict is fail whatever follows, so what matters then is to be done
// with a broken back-end quickly (one that ignores timeouts would otherwise
// cost overrun in nearly every case), not to be generous to a loaded
// machine.
const overrunAfterFailure = 500 * time.Millisecond

// abandonAfter is the least time the checker waits, after waking a Wait it
// found stuck, before it abandons the case: long enough for a case's own
// rescue (a pipe written after settle) to end the Wait first and the case
// to report what it observed.
const abandonAfter = overrun

// inspectEvery is how often the checker looks at a Wait still blocked (or
// half its patience, if that is shorter).
const inspectEvery = time.Second

// every is how often s inspects a blocked Wait.
func (s *checked) every() time.Duration { return min(inspectEvery, s.c.patience/2) }

type checkedReg struct {
	fd       int
	interest sdk.Events
}

type checked struct {
	sdk.Selector
	c *C
	// confirm has every event confirmed by poll(2) (see C.loopSelector).
	confirm bool

	mu   sync.Mutex
	regs map[sdk.Token]checkedReg
	gone map[sdk.Token]bool // unregistered tokens, to say so

	// The Wait in progress, for the inspector.
	seq        uint64 // bumped at every Wait's start and end
	inWait     bool
	start      time.Time
	timeout    time.Duration
	prevReturn time.Time
	lastWake   time.Time
	readySince time.Time
	flagged    string // the rule this Wait was reported stuck under, and woken by the checker
	timer      *time.Timer

	closed atomic.Bool
}

func newChecked(c *C, s sdk.Selector) *checked {
	return &checked{Selector: s, c: c, regs: map[sdk.Token]checkedReg{}, gone: map[sdk.Token]bool{}}
}

func (s *checked) Register(fd int, tok sdk.Token, interest sdk.Events) error {
	err := s.Selector.Register(fd, tok, interest)
	if err == nil {
		s.mu.Lock()
		s.regs[tok] = checkedReg{fd: fd, interest: interest}
		delete(s.gone, tok)
		s.mu.Unlock()
	}
	return err
}

func (s *checked) Modify(tok sdk.Token, interest sdk.Events) error {
	err := s.Selector.Modify(tok, interest)
	if err == nil {
		s.mu.Lock()
		if r, ok := s.regs[tok]; ok {
			r.interest = interest
			s.regs[tok] = r
		}
		s.mu.Unlock()
	}
	return err
}

// Unregister forgets the token whatever the answer: after it returns, an
// event for it is wrong either way.
func (s *checked) Unregister(tok sdk.Token) error {
	err := s.Selector.Unregister(tok)
	s.mu.Lock()
	if _, ok := s.regs[tok]; ok {
		delete(s.regs, tok)
		s.gone[tok] = true
	}
	s.mu.Unlock()
	return err
}

func (s *checked) Wake() error {
	s.mu.Lock()
	s.lastWake = time.Now()
	s.mu.Unlock()
	return s.Selector.Wake()
}

func (s *checked) Close() error {
	s.closed.Store(true)
	return s.Selector.Close()
}

func (s *checked) Wait(events []sdk.Event, timeout time.Duration) (n int, err error) {
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.inWait, s.start, s.timeout, s.readySince, s.flagged = true, time.Now(), timeout, time.Time{}, ""
	s.timer = time.AfterFunc(s.every(), func() { s.inspect(seq) })
	s.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			s.c.violation(ruleNoCrash, "Wait panicked: %v", r)
			n, err = 0, fmt.Errorf("conformance: the selector's Wait panicked: %v", r)
		}
		s.mu.Lock()
		s.seq++
		s.inWait = false
		s.timer.Stop()
		s.prevReturn = time.Now()
		s.mu.Unlock()
	}()
	n, err = s.Selector.Wait(events, timeout)
	if err != nil {
		return n, err
	}
	if n < 0 || n > len(events) {
		s.c.violation(ruleWaitFills, "got n=%d for len %d", n, len(events))
		return max(0, min(n, len(events))), nil
	}
	s.checkBatch(events[:n])
	return n, nil
}

// checkBatch holds one batch of events to the contract.
func (s *checked) checkBatch(events []sdk.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, ev := range events {
		for _, prev := range events[:i] {
			if prev.Token == ev.Token {
				s.c.violation(ruleOnePerToken, "token %v appears twice in one batch (%v, then %v)", ev.Token, prev.Events, ev.Events)
			}
		}
		r, ok := s.regs[ev.Token]
		if !ok {
			what := "was never registered with this selector"
			if s.gone[ev.Token] {
				what = "was unregistered before this Wait"
			}
			s.c.violation(ruleLiveTokens, "Wait reported token %v with %v, but that token %s (registered: %s)", ev.Token, ev.Events, what, s.tokensLocked())
			continue
		}
		switch {
		case ev.Events == 0:
			s.c.violation(ruleConditions, "token %v was reported with none", ev.Token)
			continue
		case r.interest == 0:
			s.c.violation(ruleInterestNone, "token %v was reported with %v", ev.Token, ev.Events)
			continue
		}
		if extra := ev.Events &^ (r.interest | sdk.Error | sdk.Hangup); extra != 0 {
			s.c.violation(ruleInterest, "token %v, registered for %v, was reported with %v", ev.Token, r.interest, ev.Events)
		}
		if !s.confirm {
			continue
		}
		if missing, found, ok := unheld(r.fd, ev.Events); ok && missing != 0 {
			s.c.violation(ruleReady, "token %v (fd %d, interest %v) was reported %v, but poll(2) right after Wait finds it %s, not %v",
				ev.Token, r.fd, r.interest, ev.Events, found, missing)
		}
	}
}

// tokensLocked lists the live tokens for a message (a few of them).
func (s *checked) tokensLocked() string {
	out, n := "", 0
	for tok := range s.regs {
		if n == 8 {
			return out + " ..."
		}
		if out != "" {
			out += " "
		}
		out += tok.String()
		n++
	}
	if out == "" {
		return "none"
	}
	return out
}

// pollNow polls fd once without blocking.
func pollNow(fd int) (revents int16, err error) {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLOUT | unix.POLLRDHUP | unix.POLLPRI}}
	for {
		_, err = unix.Poll(p, 0)
		if err != unix.EINTR {
			return p[0].Revents, err
		}
	}
}

// unheld returns the reported conditions that poll(2) does not confirm on
// fd, and what it found instead. ok is false when it cannot tell (the
// descriptor is closed: a caller bug, not the selector's).
func unheld(fd int, reported sdk.Events) (missing sdk.Events, found string, ok bool) {
	re, err := pollNow(fd)
	if err != nil || re&unix.POLLNVAL != 0 {
		return 0, "", false
	}
	// Error is not checked: besides POLLERR it is how a selector reports a
	// registration it could not make (the plugin placement's host reports
	// one the plugin refused), which poll(2) cannot see.
	holds := map[sdk.Events]int16{
		sdk.Read:   unix.POLLIN | unix.POLLPRI | unix.POLLRDHUP | unix.POLLHUP | unix.POLLERR,
		sdk.Write:  unix.POLLOUT | unix.POLLHUP | unix.POLLERR,
		sdk.Hangup: unix.POLLHUP | unix.POLLRDHUP | unix.POLLERR,
	}
	for bit, mask := range holds {
		if reported&bit != 0 && re&mask == 0 {
			missing |= bit
		}
	}
	return missing, describePoll(re), true
}

func describePoll(re int16) string {
	var e sdk.Events
	if re&(unix.POLLIN|unix.POLLPRI) != 0 {
		e |= sdk.Read
	}
	if re&unix.POLLOUT != 0 {
		e |= sdk.Write
	}
	if re&unix.POLLERR != 0 {
		e |= sdk.Error
	}
	if re&(unix.POLLHUP|unix.POLLRDHUP) != 0 {
		e |= sdk.Hangup
	}
	if e == 0 {
		return "not ready at all"
	}
	return e.String()
}

// readyLocked returns a registration poll(2) finds ready for its interest
// (or hung up, or in error), if any.
func (s *checked) readyLocked() (sdk.Token, string, bool) {
	if len(s.regs) == 0 {
		return 0, "", false
	}
	toks := make([]sdk.Token, 0, len(s.regs))
	fds := make([]unix.PollFd, 0, len(s.regs))
	for tok, r := range s.regs {
		var ev int16
		if r.interest&sdk.Read != 0 {
			ev |= unix.POLLIN | unix.POLLRDHUP
		}
		if r.interest&sdk.Write != 0 {
			ev |= unix.POLLOUT
		}
		if ev == 0 {
			continue
		}
		toks = append(toks, tok)
		fds = append(fds, unix.PollFd{Fd: int32(r.fd), Events: ev})
	}
	if len(fds) == 0 {
		return 0, "", false
	}
	if n, err := unix.Poll(fds, 0); err != nil || n == 0 {
		return 0, "", false
	}
	for i, p := range fds {
		if p.Revents != 0 && p.Revents&unix.POLLNVAL == 0 {
			return toks[i], describePoll(p.Revents), true
		}
	}
	return 0, "", false
}

// inspect looks at the Wait numbered seq if it is still blocked, every
// inspectEvery: it reports a Wait that outlived its timeout, a Wake or a
// ready registration by overrun, wakes it, and abandons the case if even
// that does not end it.
func (s *checked) inspect(seq uint64) {
	s.mu.Lock()
	if !s.inWait || s.seq != seq || s.closed.Load() {
		s.mu.Unlock()
		return
	}
	now := time.Now()
	blocked := now.Sub(s.start)
	if s.flagged != "" {
		rule := s.flagged
		s.mu.Unlock()
		s.c.abandon(fmt.Sprintf("rule: %s: Wait(%v) was still blocked %v after it started, even after the certifier's own Wake; the case was abandoned",
			rule, s.timeout, blocked.Round(time.Millisecond)))
		return
	}
	rule, why := "", ""
	switch {
	case s.timeout >= 0 && blocked >= s.timeout+s.c.patience:
		rule, why = ruleTimeoutEnds, fmt.Sprintf("Wait(%v) was still blocked after %v", s.timeout, blocked.Round(time.Millisecond))
	case s.lastWake.After(s.prevReturn) && now.Sub(later(s.lastWake, s.start)) >= s.c.patience:
		rule = ruleWakeInterrupts
		if s.lastWake.Before(s.start) {
			rule = ruleWakeBeforeWait
		}
		why = fmt.Sprintf("Wait(%v) was still blocked %v after Wake", s.timeout, now.Sub(s.lastWake).Round(time.Millisecond))
	default:
		if tok, found, ok := s.readyLocked(); ok {
			if s.readySince.IsZero() {
				s.readySince = now
			} else if ready := now.Sub(s.readySince); ready >= s.c.patience-s.every() {
				rule, why = ruleReadyEnds, fmt.Sprintf("Wait(%v) was still blocked %v after it started, although token %v had been %s for %v",
					s.timeout, blocked.Round(time.Millisecond), tok, found, ready.Round(time.Millisecond))
			}
		} else {
			s.readySince = time.Time{}
		}
	}
	if rule == "" {
		s.timer = time.AfterFunc(s.every(), func() { s.inspect(seq) })
		s.mu.Unlock()
		return
	}
	s.flagged = rule
	s.timer = time.AfterFunc(max(s.c.patience, abandonAfter), func() { s.inspect(seq) })
	s.mu.Unlock()
	s.c.violation(rule, "%s; the certifier woke it", why)
	s.Selector.Wake()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// violation records a broken rule once per case; later observations of the
// same rule are only counted (and the count logged when the case ends).
func (c *C) violation(rule, format string, args ...any) {
	c.mu.Lock()
	n := c.violated[rule]
	c.violated[rule] = n + 1
	c.mu.Unlock()
	if n == 0 {
		c.Errorf("rule: %s: %s", rule, fmt.Sprintf(format, args...))
	}
}
