package plugin

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/dataplane"
)

// RemoteSelector is a supervised out-of-process selector: an sdk.Selector
// whose back-end runs in a plugin process, restarted when it dies or stops
// answering. Launch(ctx, sdk.Selectors, spec) makes one.
//
// A selector recovers by replaying its registrations: when the plugin
// fails, Wait kills it, starts a new one, hands it every live registration
// and returns 0, nil; the kernel's loop simply iterates again, and since
// readiness is level-triggered no event is lost. Once the plugin has failed
// more often than Spec allows, Wait returns an error wrapping
// sdk.ErrPluginFailed, and keeps returning it.
type RemoteSelector struct {
	*supervisor
	dp *dataplane.Client

	// The watchdog kills a plugin that does not answer a Wait in time; it
	// runs on a timer goroutine. deadline is its current grace, for the
	// log; clock measures the exchanges it is derived from.
	watchdog *time.Timer
	deadline atomic.Int64
	clock    exchangeClock
	woken    atomic.Bool
	// wakeCh ends a backoff sleep early (Wake sends, never blocking).
	wakeCh chan struct{}

	// down: the plugin failed and no replacement is attached yet; the
	// next start may be made at retryAt, or is in progress (starting
	// delivers its outcome). Loop goroutine only.
	down     bool
	retryAt  time.Time
	starting chan launched

	// twin is the in-process back-end serving since the plugin could not
	// be kept alive (Spec.Fallback); nil until then. refused holds the
	// registrations it would not take, reported as one Error event each
	// (errPending: not yet reported); pollNext makes its first Wait poll,
	// since a Wake may have gone to the dead plugin. Loop goroutine only,
	// except twin, which Wake reads.
	twin       atomic.Pointer[twinSelector]
	refused    map[sdk.Token]bool
	errPending []sdk.Token
	pollNext   bool
}

type twinSelector struct{ sdk.Selector }

var _ sdk.Selector = (*RemoteSelector)(nil)

func launchSelector(ctx context.Context, spec Spec) (*RemoteSelector, error) {
	sup, err := newSupervisor(sdk.Selectors, spec)
	if err != nil {
		return nil, err
	}
	s := &RemoteSelector{supervisor: sup, wakeCh: make(chan struct{}, 1)}
	err = sup.first(ctx, func(p *process) error {
		dp, err := dataplane.NewClient(p.conn, s.logger.Named("dataplane"))
		s.dp = dp
		return err
	})
	if err != nil {
		return nil, err
	}
	s.watchdog = time.AfterFunc(time.Hour, func() { s.killHung("a wait", time.Duration(s.deadline.Load())) })
	s.watchdog.Stop()
	return s, nil
}

// Register, Modify and Unregister only update the data-plane client's
// table (the source of truth a restart re-sends); they never talk to the
// plugin, so a dead plugin cannot make them fail.
func (s *RemoteSelector) Register(fd int, tok sdk.Token, interest sdk.Events) error {
	if tw := s.twin.Load(); tw != nil {
		return tw.Register(fd, tok, interest)
	}
	if err := s.usable(sdk.ErrSelectorClosed); err != nil {
		return err
	}
	return s.dp.Register(fd, tok, interest)
}

func (s *RemoteSelector) Modify(tok sdk.Token, interest sdk.Events) error {
	if tw := s.twin.Load(); tw != nil {
		if s.refused[tok] {
			return nil // reported as an Error event; it stays local
		}
		return tw.Modify(tok, interest)
	}
	if err := s.usable(sdk.ErrSelectorClosed); err != nil {
		return err
	}
	return s.dp.Modify(tok, interest)
}

func (s *RemoteSelector) Unregister(tok sdk.Token) error {
	if tw := s.twin.Load(); tw != nil {
		if s.refused[tok] {
			delete(s.refused, tok)
			return nil
		}
		return tw.Unregister(tok)
	}
	if err := s.usable(sdk.ErrSelectorClosed); err != nil {
		return err
	}
	return s.dp.Unregister(tok)
}

// Wait waits on the plugin. A failed plugin is replaced here, on the loop
// goroutine, and the Wait returns 0, nil so the loop iterates again; while
// a restart's backoff runs, Wait sleeps (no longer than its timeout, and
// a Wake ends the sleep) and returns 0, nil, so the loop's callbacks and
// timers keep running although no readiness is reported until a plugin is
// back.
func (s *RemoteSelector) Wait(events []sdk.Event, timeout time.Duration) (int, error) {
	if tw := s.twin.Load(); tw != nil {
		return s.waitTwin(tw, events, timeout)
	}
	if err := s.usable(sdk.ErrSelectorClosed); err != nil {
		return 0, err
	}
	if s.down {
		return s.recover(timeout)
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		slice := timeout
		if timeout < 0 || timeout > healthSlice {
			slice = healthSlice
		}
		grace := s.clock.grace(s.spec.ReplyTimeout)
		s.deadline.Store(int64(slice + grace))
		s.watchdog.Reset(slice + grace)
		t0 := time.Now()
		n, err := s.dp.Wait(events, slice)
		if !s.watchdog.Stop() {
			// The watchdog fired: the process is being killed, whatever
			// this Wait managed to return.
			return s.fail(fmt.Errorf("%w (%v)", errNoAnswer, slice+grace))
		}
		now := time.Now()
		took := now.Sub(t0)
		if err != nil {
			if errors.Is(err, sdk.ErrSelectorClosed) {
				return 0, err
			}
			return s.fail(err)
		}
		if p := s.cur.Load(); p != nil {
			p.lastOK.Store(now.UnixNano())
		}
		woken := s.woken.Swap(false)
		switch {
		case slice == 0:
			s.clock.observe(took) // a poll: all of it is the exchange
		case n == 0 && !woken:
			s.clock.observe(took - slice) // timed out: the rest is the exchange
		}
		if n > 0 || slice == timeout || woken {
			return n, nil
		}
		if timeout > 0 {
			if timeout = time.Until(deadline); timeout <= 0 {
				return 0, nil
			}
		}
	}
}

// fail handles the failure of the current plugin: the restart policy
// (restart.go) says when to start the next; the start itself runs in the
// background (starting), so that the loop keeps iterating.
func (s *RemoteSelector) fail(cause error) (int, error) {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	return s.failWith(p, cause)
}

func (s *RemoteSelector) failWith(p *process, cause error) (int, error) {
	if err := s.usable(sdk.ErrSelectorClosed); err != nil {
		return 0, err // Close stopped the plugin: not a failure
	}
	retryAt, final := s.failed(p, cause)
	if final != nil {
		return s.lost(final)
	}
	s.down, s.retryAt = true, retryAt
	if !time.Now().Before(retryAt) {
		s.startAsync()
	}
	return 0, nil
}

// startAsync launches a replacement on another goroutine; recover adopts
// it.
func (s *RemoteSelector) startAsync() {
	ch := make(chan launched, 1)
	s.starting = ch
	go func() { ch <- s.launch() }()
}

// recover runs while the plugin is down: it sleeps (no longer than
// timeout; a Wake or Close ends the sleep) until the next start is due,
// which it then launches, or until the start in progress has finished,
// whose process it then adopts: the data-plane client replays every live
// registration into it (dataplane.Client.Replace queues them for the next
// Wait). It returns 0, nil unless the supervisor is closed or gives up.
func (s *RemoteSelector) recover(timeout time.Duration) (int, error) {
	if s.starting == nil && !time.Now().Before(s.retryAt) {
		s.startAsync()
	}
	var t <-chan time.Time
	wait := timeout
	if s.starting == nil {
		if d := time.Until(s.retryAt); wait < 0 || d < wait {
			wait = d
		}
	}
	if wait >= 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		t = timer.C
	}
	var l launched
	select {
	case <-t:
		s.woken.Store(false)
		if s.starting == nil && !time.Now().Before(s.retryAt) {
			s.startAsync()
		}
		return 0, s.usable(sdk.ErrSelectorClosed)
	case <-s.wakeCh:
		s.woken.Store(false)
		return 0, s.usable(sdk.ErrSelectorClosed)
	case <-s.life.Done():
		return 0, s.usable(sdk.ErrSelectorClosed)
	case l = <-s.starting:
		s.starting = nil
	}
	if l.err != nil {
		if err := s.usable(sdk.ErrSelectorClosed); err != nil {
			return 0, err
		}
		return s.failWith(nil, l.err)
	}
	p, err := s.adopt(l, func(p *process) error { return s.dp.Replace(p.conn) }, sdk.ErrSelectorClosed)
	if err == nil {
		s.down = false
		return 0, nil
	}
	if cerr := s.usable(sdk.ErrSelectorClosed); cerr != nil {
		return 0, cerr
	}
	return s.failWith(p, err)
}

// lost ends supervision: with Spec.Fallback the in-process twin takes
// every live registration and serves from now on; otherwise the error is
// final and every later call returns it.
func (s *RemoteSelector) lost(final error) (int, error) {
	s.down = false
	tw, err := s.giveUp(final)
	if err != nil {
		return 0, err
	}
	sel := tw.(sdk.Selector)
	s.refused = make(map[sdk.Token]bool)
	s.dp.EachRegistration(func(fd int, tok sdk.Token, interest sdk.Events) {
		if err := sel.Register(fd, tok, interest); err != nil {
			s.logger.Warn("the in-process selector refused a registration carried over; reporting an error event",
				"token", tok, "fd", fd, "error", err)
			s.refused[tok] = true
			s.errPending = append(s.errPending, tok)
		}
	})
	s.pollNext = true
	s.twin.Store(&twinSelector{sel})
	_ = s.dp.Close() // after the Store: a Wake that finds it closed looks again
	return 0, nil
}

// waitTwin is Wait once the in-process twin serves.
func (s *RemoteSelector) waitTwin(tw *twinSelector, events []sdk.Event, timeout time.Duration) (int, error) {
	n := 0
	for len(s.errPending) > 0 && n < len(events) {
		tok := s.errPending[0]
		s.errPending = s.errPending[1:]
		if s.refused[tok] {
			events[n] = sdk.Event{Token: tok, Events: sdk.Error}
			n++
		}
	}
	if n > 0 || s.pollNext {
		timeout, s.pollNext = 0, false
	}
	m, err := tw.Wait(events[n:], timeout)
	return n + m, err
}

// Wake is safe from any goroutine. While the plugin is being replaced the
// data plane has no connection and the wake cannot be sent; that is fine,
// because the Wait doing the replacing returns 0 anyway, and a Wait
// sleeping out a backoff is woken through wakeCh.
func (s *RemoteSelector) Wake() error {
	if tw := s.twin.Load(); tw != nil {
		return tw.Wake()
	}
	s.woken.Store(true)
	select {
	case s.wakeCh <- struct{}{}:
	default:
	}
	if err := s.dp.Wake(); err != nil && errors.Is(err, sdk.ErrSelectorClosed) {
		if tw := s.twin.Load(); tw != nil {
			return tw.Wake() // fell back meanwhile
		}
		return s.usable(sdk.ErrSelectorClosed)
	}
	return nil
}

// Capabilities are the plugin selector's, as reported in the data-plane
// hello, except for the name: a third-party plugin is named by what it
// serves (its Backends.Name), not by the selector it wraps, so that a
// message about it (the kernel's "selector NAME failed") names the plugin.
// Once the in-process twin serves, they are the twin's.
func (s *RemoteSelector) Capabilities() sdk.Capabilities {
	if tw := s.twin.Load(); tw != nil {
		return tw.Capabilities()
	}
	c := s.dp.Capabilities()
	if s.spec.Path != "" && s.spec.Name != "" {
		c.Name = s.spec.Name
	}
	return c
}

// Close shuts the plugin down: a Shutdown call, then a kill if it has not
// exited within Spec.StopTimeout (and closes the in-process twin if one
// took over). It never closes registered descriptors.
// It may be called from another goroutine than the loop's: a Wait blocked
// there, or replacing a failed plugin, returns an error wrapping
// sdk.ErrSelectorClosed.
func (s *RemoteSelector) Close() error {
	if !s.stop() {
		return fmt.Errorf("selector plugin %q: %w", s.name, sdk.ErrSelectorClosed)
	}
	if tw := s.twin.Load(); tw != nil {
		return tw.Close()
	}
	if err := s.dp.Close(); err != nil && !errors.Is(err, sdk.ErrSelectorClosed) {
		return fmt.Errorf("selector plugin %q: %w", s.name, err)
	}
	return nil
}
