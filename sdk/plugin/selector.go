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

// waitSlice bounds one data-plane Wait, so that a plugin hung inside an
// indefinite wait is noticed within waitSlice+ReplyTimeout. An idle loop
// pays one round trip per slice.
const waitSlice = time.Second

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
	// runs on a timer goroutine.
	watchdog *time.Timer
	woken    atomic.Bool
}

var _ sdk.Selector = (*RemoteSelector)(nil)

func launchSelector(ctx context.Context, spec Spec) (*RemoteSelector, error) {
	sup, err := newSupervisor(sdk.Selectors, spec)
	if err != nil {
		return nil, err
	}
	s := &RemoteSelector{supervisor: sup}
	err = sup.first(ctx, func(p *process) error {
		dp, err := dataplane.NewClient(p.conn, s.logger.Named("dataplane"))
		s.dp = dp
		return err
	})
	if err != nil {
		return nil, err
	}
	s.watchdog = time.AfterFunc(time.Hour, func() { s.killHung("a wait") })
	s.watchdog.Stop()
	return s, nil
}

// Register, Modify and Unregister only update the data-plane client's
// table (the source of truth a restart re-sends); they never talk to the
// plugin, so a dead plugin cannot make them fail.
func (s *RemoteSelector) Register(fd int, tok sdk.Token, interest sdk.Events) error {
	if err := s.usable(sdk.ErrSelectorClosed); err != nil {
		return err
	}
	return s.dp.Register(fd, tok, interest)
}

func (s *RemoteSelector) Modify(tok sdk.Token, interest sdk.Events) error {
	if err := s.usable(sdk.ErrSelectorClosed); err != nil {
		return err
	}
	return s.dp.Modify(tok, interest)
}

func (s *RemoteSelector) Unregister(tok sdk.Token) error {
	if err := s.usable(sdk.ErrSelectorClosed); err != nil {
		return err
	}
	return s.dp.Unregister(tok)
}

// Wait waits on the plugin. A failed plugin is replaced here, on the loop
// goroutine, and the Wait returns 0, nil so the loop iterates again.
func (s *RemoteSelector) Wait(events []sdk.Event, timeout time.Duration) (int, error) {
	if err := s.usable(sdk.ErrSelectorClosed); err != nil {
		return 0, err
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		slice := timeout
		if timeout < 0 || timeout > waitSlice {
			slice = waitSlice
		}
		s.watchdog.Reset(slice + s.spec.ReplyTimeout)
		n, err := s.dp.Wait(events, slice)
		if !s.watchdog.Stop() {
			// The watchdog fired: the process is being killed, whatever
			// this Wait managed to return.
			return 0, s.replace(errNoAnswer)
		}
		if err != nil {
			if errors.Is(err, sdk.ErrSelectorClosed) {
				return 0, err
			}
			return 0, s.replace(err)
		}
		if n > 0 || slice == timeout || s.woken.Swap(false) {
			return n, nil
		}
		if timeout > 0 {
			if timeout = time.Until(deadline); timeout <= 0 {
				return 0, nil
			}
		}
	}
}

// replace restarts the plugin and replays every live registration into the
// new one (dataplane.Client.Replace queues them for the next Wait).
func (s *RemoteSelector) replace(cause error) error {
	return s.restart(cause, sdk.ErrSelectorClosed, func(p *process) error { return s.dp.Replace(p.conn) })
}

// Wake is safe from any goroutine. While the plugin is being replaced the
// data plane has no connection and the wake cannot be sent; that is fine,
// because the Wait doing the replacing returns 0 anyway.
func (s *RemoteSelector) Wake() error {
	s.woken.Store(true)
	if err := s.dp.Wake(); err != nil && errors.Is(err, sdk.ErrSelectorClosed) {
		return err
	}
	return nil
}

// Capabilities are the plugin selector's, as reported in the data-plane hello.
func (s *RemoteSelector) Capabilities() sdk.Capabilities { return s.dp.Capabilities() }

// Close shuts the plugin down: a Shutdown call, then a kill if it has not
// exited within Spec.StopTimeout. It never closes registered descriptors.
// It may be called from another goroutine than the loop's: a Wait blocked
// there, or replacing a failed plugin, returns an error wrapping
// sdk.ErrSelectorClosed.
func (s *RemoteSelector) Close() error {
	if !s.stop() {
		return fmt.Errorf("selector plugin %q: %w", s.name, sdk.ErrSelectorClosed)
	}
	if err := s.dp.Close(); err != nil && !errors.Is(err, sdk.ErrSelectorClosed) {
		return fmt.Errorf("selector plugin %q: %w", s.name, err)
	}
	return nil
}
