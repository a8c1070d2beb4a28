package plugin

import (
	"fmt"
	"time"

	"github.com/loopkernel/loopkernel/sdk"
)

// The restart policy: what the supervisor does when a plugin process died,
// hung, or would not start. It is split in two steps, so that a family can
// wait between them its own way (a selector keeps its loop iterating, a
// call family's monitor sleeps):
//
//   - failed records a failure and says when the next start may be made,
//     or that the outage has outlasted Spec.RestartBudget and the
//     supervisor gives up;
//   - replace makes one start (adopting the standby if there is one) and
//     hands the new process to the family's attach.
//
// The budget is measured in time, not attempts, because attempts are what
// a fault that every new process repeats spends fastest: with delays of
// 0/10/20/40/80 ms, "5 restarts a minute" was gone in 150 ms. An outage
// starts at a failure and ends once a replacement has served for
// stableFor; within it the delay doubles from firstBackoff up to
// Spec.MaxBackoff.

// firstBackoff is the delay before the second attempt of an outage (the
// first is immediate); each later one doubles it, up to Spec.MaxBackoff.
const firstBackoff = 10 * time.Millisecond

// stableFor is how long a replacement must go on answering its health
// check after its adoption for its outage to be over: twice the longest
// backoff, so that a process that keeps dying soon after its start never
// resets the count (nor one that never answers at all, however long it
// took to die).
func (s *supervisor) stableFor() time.Duration { return 2 * s.spec.MaxBackoff }

// served reports whether p answered its health check for stableFor after
// its adoption.
func (s *supervisor) served(p *process) bool {
	if p == nil || p.attached.IsZero() {
		return false
	}
	ok := p.lastOK.Load()
	return ok != 0 && time.Unix(0, ok).Sub(p.attached) >= s.stableFor()
}

// failed records that p (the process that failed, nil when a start failed
// before there was one) failed with cause. p is killed and reaped. It
// returns when the next start may be made, or an error wrapping
// sdk.ErrPluginFailed once the outage has outlasted the budget (or
// Spec.MaxRestarts): the caller then falls back or gives up (giveUp).
func (s *supervisor) failed(p *process, cause error) (retryAt time.Time, final error) {
	s.incidents.note(cause)
	pid, status := 0, "did not start"
	if p != nil {
		p.kill()
		s.addDeadCPU(p)
		pid, status = p.pid, p.exitStatus()
	}
	now := time.Now()
	if s.outage.IsZero() || s.served(p) {
		s.outage, s.failures = now, 0
	}
	s.failures++
	into := now.Sub(s.outage)
	spent := s.spec.MaxRestarts < 0 || into >= s.spec.RestartBudget ||
		(s.spec.MaxRestarts > 0 && s.failures > s.spec.MaxRestarts)
	if spent {
		return time.Time{}, fmt.Errorf("%s plugin %q (pid %d, %s) could not be kept alive: %d failures in %s (restart budget %s, %d restarts in all): %w: %w",
			s.family, s.name, pid, status, s.failures, into.Round(time.Millisecond), s.spec.RestartBudget, s.total, sdk.ErrPluginFailed, cause)
	}
	delay := time.Duration(0)
	if k := s.failures - 1; k > 0 {
		delay = s.spec.MaxBackoff
		if k <= 30 && firstBackoff<<(k-1) < delay {
			delay = firstBackoff << (k - 1)
		}
	}
	// The last attempt is made when the budget runs out, not after.
	if left := s.spec.RestartBudget - into; delay > left {
		delay = left
	}
	s.logger.Warn("plugin failed; restarting", "pid", pid, "exit", status, "error", cause,
		"restart", s.total+1, "failures", s.failures, "backoff", delay)
	return now.Add(delay), nil
}

// replace makes one start and hands the process to attach: launch, then
// adopt. On success the process is current; on failure the process (if
// one started) is returned with the error, for failed.
func (s *supervisor) replace(attach func(*process) error, closedErr error) (*process, error) {
	l := s.launch()
	if l.err != nil {
		return nil, l.err
	}
	return s.adopt(l, attach, closedErr)
}

// launched is a replacement process started (or a standby taken) but not
// yet adopted.
type launched struct {
	p       *process
	err     error
	adopted bool // a standby
	t0      time.Time
}

// launch starts a replacement, or takes the standby. It may run on any
// goroutine (a selector starts in the background, so that its loop keeps
// iterating): until adopt, the process is in s.pending, which stop kills.
func (s *supervisor) launch() launched {
	s.mu.Lock()
	s.total++ // Stats reads it from other goroutines
	s.mu.Unlock()
	l := launched{t0: time.Now()}
	if l.p = s.spare.take(s.life); l.p != nil {
		l.adopted = true
	} else if l.p, l.err = s.start(s.life); l.err != nil {
		return l
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		discard(l.p, time.Time{})
		return launched{err: fmt.Errorf("%s plugin %q: closed during a restart", s.family, s.name)}
	}
	s.pending[l.p] = true
	s.mu.Unlock()
	return l
}

// adopt hands a launched process to attach and makes it current.
func (s *supervisor) adopt(l launched, attach func(*process) error, closedErr error) (*process, error) {
	p := l.p
	s.mu.Lock()
	delete(s.pending, p)
	closed := s.closed
	s.mu.Unlock()
	if closed {
		discard(p, time.Time{})
		return nil, fmt.Errorf("%s plugin %q: %w", s.family, s.name, closedErr)
	}
	if err := attach(p); err != nil {
		return p, fmt.Errorf("%s plugin %q: %w", s.family, s.name, err)
	}
	p.attached = time.Now()
	s.mu.Lock()
	if s.closed {
		// stop ran meanwhile and stopped the old process; this one is
		// nobody's.
		s.mu.Unlock()
		p.kill()
		return nil, fmt.Errorf("%s plugin %q: %w", s.family, s.name, closedErr)
	}
	s.proc = p
	s.mu.Unlock()
	s.cur.Store(p)
	s.logger.Info("plugin restarted", "pid", p.pid, "restart", s.total, "standby", l.adopted, "took", time.Since(l.t0))
	s.spare.fill()
	return p, nil
}

// restart is the two steps for a caller that may block until the plugin
// is back: it replaces old (which failed with cause), sleeping out each
// backoff, and returns nil once a replacement is attached; the error of
// failed when the budget is spent; or one wrapping closedErr if stop ran
// meanwhile.
func (s *supervisor) restart(old *process, cause, closedErr error, attach func(*process) error) error {
	errClosed := fmt.Errorf("%s plugin %q: %w", s.family, s.name, closedErr)
	p := old
	for {
		if s.life.Err() != nil {
			return errClosed
		}
		retryAt, final := s.failed(p, cause)
		if final != nil {
			return final
		}
		t := time.NewTimer(time.Until(retryAt))
		select {
		case <-t.C:
		case <-s.life.Done():
			t.Stop()
			return errClosed
		}
		if s.life.Err() != nil {
			return errClosed
		}
		p, cause = s.replace(attach, closedErr)
		if cause == nil {
			return nil
		}
		if s.life.Err() != nil {
			if p != nil {
				p.kill()
			}
			return errClosed
		}
	}
}

// giveUp ends supervision after final (from failed). With Spec.Fallback
// it makes the in-process twin and returns it, logging a warning that
// says why; the family then serves from it. Otherwise, or if the twin
// cannot be made, final is kept (every later usable returns it) and
// returned.
func (s *supervisor) giveUp(final error) (twin any, err error) {
	s.spare.close(time.Time{})
	if s.twin != nil {
		tw, terr := s.twin()
		if terr == nil {
			s.mu.Lock()
			s.fellBack = true
			s.mu.Unlock()
			s.cur.Store(nil)
			s.logger.Warn("plugin could not be kept alive; falling back to the in-process back-end",
				"fallback", s.spec.Fallback, "error", final)
			return tw, nil
		}
		final = fmt.Errorf("%w (falling back to in-process %q failed too: %w)", final, s.spec.Fallback, terr)
	}
	s.mu.Lock()
	s.gaveUp = final
	s.mu.Unlock()
	s.logger.Error("plugin could not be kept alive; giving up", "error", final)
	return nil, final
}
