package plugin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/proactorplane"
)

// RemoteProactor is a supervised out-of-process proactor: an sdk.Proactor
// whose io_uring runs in a plugin process, for the completion driver to sit
// on. Launch(ctx, sdk.Proactors, spec) makes one.
//
// gRPC carries the control plane only (handshake, health, stats,
// shutdown); every operation travels on the shared-memory plane of
// sdk/proactorplane, whose control socket is the data-plane socketpair the
// supervisor hands every plugin. The plugin owns its ring; the host keeps
// owning every socket and passes each to the plugin once.
//
// A proactor recovers by failing what was in flight and replaying what is
// level-triggered in effect: when the plugin dies (its process exits, or
// its heartbeat on the plane stops for the hang limit and the supervisor
// kills it), the next Complete detaches the dead plane
// (proactorplane.Client.Abandon): every read, write, connect and shutdown
// in flight completes with an error that wraps sdk.ErrBackendDied and says
// which plugin died and how (DiedError), so the transports above close
// those connections with it; accepts and descriptor watches are kept and
// sent again to the replacement, and descriptors still in use are
// registered with it again on their next operation. The restart follows
// the supervisor's policy (a time budget, backoff) and runs on another
// goroutine, so the loop keeps running its callbacks and timers meanwhile;
// operations submitted during the outage wait for the replacement. Once
// the budget is spent, every waiting operation fails and Complete returns
// the supervisor's error, which wraps sdk.ErrPluginFailed. There is no
// in-process fallback (Spec.Fallback is refused): the operations in
// flight live in the plugin's ring, and nothing could hand them over.
type RemoteProactor struct {
	*supervisor
	c *proactorplane.Client

	// hbMu guards plane, the current process's plane, which the monitor
	// reads the heartbeat of: the loop unmaps a plane only under it.
	hbMu  sync.Mutex
	plane *proactorplane.Plane
	// died is the process the monitor saw exit; hung says the monitor
	// killed it because its heartbeat stopped.
	died atomic.Pointer[process]
	hung atomic.Bool

	// Loop goroutine only. live is the attached process; down: it failed
	// and no replacement is attached yet, the next start is due at retryAt
	// or in progress (starting delivers it); deathErr is what operations
	// the last death ended report; final is the give-up error.
	live     *process
	down     bool
	retryAt  time.Time
	starting chan launched
	deathErr error
	final    error
}

var _ sdk.Proactor = (*RemoteProactor)(nil)

func launchProactor(ctx context.Context, spec Spec) (*RemoteProactor, error) {
	if spec.Fallback != "" {
		return nil, fmt.Errorf("proactor plugin %q: no in-process fallback (Spec.Fallback %q): the operations in flight live in the plugin's ring",
			spec.Name, spec.Fallback)
	}
	sup, err := newSupervisor(sdk.Proactors, spec)
	if err != nil {
		return nil, err
	}
	c, err := proactorplane.NewClient(sup.name)
	if err != nil {
		sup.cancel()
		return nil, err
	}
	r := &RemoteProactor{supervisor: sup, c: c}
	if err := sup.first(ctx, r.attach); err != nil {
		c.Close()
		return nil, err
	}
	return r, nil
}

// attach hands p's data-plane socket to the client (a new plane, the
// hello, the replay of what the last plugin's death kept) and starts p's
// monitor.
func (r *RemoteProactor) attach(p *process) error {
	if _, err := r.c.Attach(int(p.conn.Fd()), r.spec.StartTimeout); err != nil {
		return err
	}
	r.hbMu.Lock()
	r.plane = r.c.Plane()
	r.hbMu.Unlock()
	r.live = p
	go r.monitor(p)
	return nil
}

// hangLimit is how long the plugin's heartbeat may stand still before it
// counts as hung. The plugin beats at least every 250ms while it waits,
// and on every turn of its loop while it works.
func (r *RemoteProactor) hangLimit() time.Duration {
	return max(min(r.spec.ReplyTimeout, 3*time.Second), callMinGrace)
}

// monitor watches one process: its exit (reported to the loop through
// died and a wake-up) and its heartbeat on the plane (a process whose
// heartbeat stops for hangLimit is killed, which ends in an exit too).
func (r *RemoteProactor) monitor(p *process) {
	tick := time.NewTicker(healthSlice)
	defer tick.Stop()
	limit := r.hangLimit()
	var last uint64
	moved := time.Now()
	for {
		select {
		case <-p.run.exited:
			r.died.Store(p)
			_ = r.c.Wake()
			return
		case <-r.life.Done():
			return
		case <-tick.C:
		}
		r.hbMu.Lock()
		if r.plane == nil {
			r.hbMu.Unlock()
			continue
		}
		hb := r.plane.Heartbeat()
		r.hbMu.Unlock()
		now := time.Now()
		if hb != last {
			last, moved = hb, now
			p.lastOK.Store(now.UnixNano())
			continue
		}
		if now.Sub(moved) >= limit && !r.hung.Load() {
			r.hung.Store(true)
			r.killHung("its heartbeat", limit)
		}
	}
}

// Complete implements sdk.Proactor. A dead plugin is noticed here, on the
// loop goroutine (the monitor's wake-up ends a Complete asleep): its
// operations in flight complete with DiedError, and a replacement is
// started in the background; while none is attached, Complete delivers
// what the host made and sleeps no longer than its timeout.
func (r *RemoteProactor) Complete(done []sdk.Completion, timeout time.Duration) (int, error) {
	if r.final != nil {
		if n, _ := r.c.Complete(done, 0); n > 0 {
			return n, nil
		}
		return 0, r.final
	}
	if err := r.usable(sdk.ErrSelectorClosed); err != nil {
		return 0, err
	}
	if p := r.died.Load(); p != nil && p == r.live {
		r.fail(p, nil)
	}
	if r.down {
		r.recover()
		if r.down && r.starting == nil {
			if d := time.Until(r.retryAt); timeout < 0 || d < timeout {
				timeout = max(d, 0)
			}
		}
	}
	n, err := r.c.Complete(done, timeout)
	if err != nil {
		if uerr := r.usable(sdk.ErrSelectorClosed); uerr != nil {
			return n, uerr
		}
		if r.live == nil {
			return n, err
		}
		r.fail(r.live, err)
	} else if n > 0 || r.died.Load() != r.live || r.live == nil {
		return n, nil
	} else {
		r.fail(r.live, nil)
	}
	k, _ := r.c.Complete(done[n:], 0)
	if r.final != nil && n+k == 0 {
		return 0, r.final
	}
	return n + k, nil
}

// fail handles the failure of p, the attached process (cause nil: it
// exited): the supervisor kills and reaps it and says when to start the
// next; the client detaches its plane, failing the operations in flight
// with DiedError.
func (r *RemoteProactor) fail(p *process, cause error) {
	if cause == nil {
		cause = errors.New("plugin process exited")
		if r.hung.Swap(false) {
			cause = fmt.Errorf("%w (its heartbeat stood still for %v)", errNoAnswer, r.hangLimit())
		}
	}
	r.hbMu.Lock()
	r.plane = nil
	r.hbMu.Unlock()
	retryAt, final := r.failed(p, cause)
	r.deathErr = fmt.Errorf("proactor plugin %q (pid %d) died (%s) with the operation in flight: %w",
		r.name, p.pid, p.exitStatus(), sdk.ErrBackendDied)
	r.live = nil
	r.died.Store(nil)
	r.c.Abandon(proactorplane.DiedErrno)
	_ = p.conn.Close()
	if final != nil {
		r.lost(final)
		return
	}
	r.down, r.retryAt = true, retryAt
	r.recover()
}

// lost ends supervision: every operation still waiting fails, and Complete
// returns final from now on.
func (r *RemoteProactor) lost(final error) {
	r.down = false
	r.c.FailAll(proactorplane.DiedErrno)
	_, r.final = r.giveUp(final)
}

// recover runs while the plugin is down, without blocking: it launches
// the next start once it is due (on another goroutine, which wakes the
// loop when it is done) and adopts a start that has finished.
func (r *RemoteProactor) recover() {
	if r.starting == nil {
		if !time.Now().Before(r.retryAt) {
			ch := make(chan launched, 1)
			r.starting = ch
			go func() {
				ch <- r.launch()
				_ = r.c.Wake()
			}()
		}
		return
	}
	var l launched
	select {
	case l = <-r.starting:
		r.starting = nil
	default:
		return
	}
	if r.usable(sdk.ErrSelectorClosed) != nil {
		return
	}
	if l.err != nil {
		r.retry(nil, l.err)
		return
	}
	p, err := r.adopt(l, r.attach, sdk.ErrSelectorClosed)
	if err == nil {
		r.down = false
		return
	}
	if r.usable(sdk.ErrSelectorClosed) != nil {
		return
	}
	if p != nil {
		_ = p.conn.Close()
	}
	r.retry(p, err)
}

// retry records a start that failed (p: the process, if one started) and
// schedules the next, or gives up.
func (r *RemoteProactor) retry(p *process, cause error) {
	retryAt, final := r.failed(p, cause)
	if final != nil {
		r.lost(final)
		return
	}
	r.retryAt = retryAt
	r.recover()
}

// DiedError is the error an operation reports when the plugin it was in
// flight in died: it names the plugin, its pid and how it ended, and wraps
// sdk.ErrBackendDied. proactorplane.Driver calls it for every result that
// carries proactorplane.DiedErrno.
func (r *RemoteProactor) DiedError() error {
	if r.deathErr == nil {
		return fmt.Errorf("proactor plugin %q died with the operation in flight: %w", r.name, sdk.ErrBackendDied)
	}
	return r.deathErr
}

// Submit implements sdk.Proactor: operations wait in the client's backlog
// while no plugin is attached.
func (r *RemoteProactor) Submit(ops []sdk.Submission) error { return r.c.Submit(ops) }

// Forget drops the plugin's copy of fd (proactorplane.Client.Forget): the
// host is about to close it.
func (r *RemoteProactor) Forget(fd int) { r.c.Forget(fd) }

// Wake implements sdk.Proactor; any goroutine.
func (r *RemoteProactor) Wake() error { return r.c.Wake() }

// ProvideBuffers implements sdk.Proactor.
func (r *RemoteProactor) ProvideBuffers(group uint16, bufs [][]byte) error {
	return r.c.ProvideBuffers(group, bufs)
}

// Capabilities implements sdk.Proactor: the plane's operations, under the
// plugin's name.
func (r *RemoteProactor) Capabilities() sdk.ProactorCapabilities { return r.c.Capabilities() }

// Close shuts the plugin down (a Shutdown call, then a kill past
// Spec.StopTimeout) and releases the plane; operations in flight complete
// with ECANCELED. Loop goroutine, as every method but Wake and Stats.
func (r *RemoteProactor) Close() error {
	if !r.stop() {
		return fmt.Errorf("proactor plugin %q: %w", r.name, sdk.ErrSelectorClosed)
	}
	r.hbMu.Lock()
	r.plane = nil
	r.hbMu.Unlock()
	err := r.c.Close()
	if r.live != nil {
		_ = r.live.conn.Close()
		r.live = nil
	}
	return err
}
