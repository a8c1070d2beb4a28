package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/dataplane"
)

// remoteCalls is what RemoteResolver and RemoteExecutor share: a call
// plane (dataplane.CallClient) to the current plugin process, and a monitor
// goroutine that pings it for health and restarts the plugin when its plane
// dies.
//
// A call family recovers by failing what was in flight: a call the dead
// process had received may or may not have run, so it is not retried; it
// fails with an error wrapping sdk.ErrBackendDied that names the process and
// how it ended. A call that had not been sent yet waits for the restarted
// process and goes there. Once the supervisor gives up, every call fails
// with its error, which wraps sdk.ErrPluginFailed.
type remoteCalls struct {
	*supervisor
	fam       dataplane.Family
	closedErr error // what calls after Close wrap

	mu    sync.Mutex
	cc    *dataplane.CallClient
	proc  *process      // cc's process
	ready chan struct{} // closed when cc is replaced, or when no replacement will come

	hung        atomic.Bool // the health check killed the current process
	clock       exchangeClock
	monitorDone chan struct{}

	// twin is the in-process back-end serving since the plugin could not
	// be kept alive (Spec.Fallback); nil until then.
	twin atomic.Pointer[twinBackend]
}

// twinBackend holds the in-process resolver or executor that took over.
type twinBackend struct{ be any }

// errUseTwin tells do that the in-process twin serves now.
var errUseTwin = errors.New("plugin: the in-process fallback serves")

func (r *remoteCalls) init(ctx context.Context, sup *supervisor, fam dataplane.Family, closedErr error) error {
	r.supervisor, r.fam, r.closedErr = sup, fam, closedErr
	r.monitorDone = make(chan struct{})
	if err := sup.first(ctx, r.attach); err != nil {
		return err
	}
	go r.monitor()
	return nil
}

// attach adopts a new process's call plane and releases the calls that
// were waiting for it.
func (r *remoteCalls) attach(p *process) error {
	cc, err := dataplane.NewCallClient(p.conn, r.fam, r.logger.Named("callplane"))
	if err != nil {
		return err
	}
	r.mu.Lock()
	old := r.ready
	r.cc, r.proc, r.ready = cc, p, make(chan struct{})
	r.mu.Unlock()
	if old != nil {
		close(old)
	}
	return nil
}

// monitor health-checks the current process and replaces it when its call
// plane dies, until the supervisor stops or gives up (and then, with
// Spec.Fallback, hands over to the in-process twin).
func (r *remoteCalls) monitor() {
	defer close(r.monitorDone)
	tick := time.NewTicker(min(healthSlice, r.spec.ReplyTimeout))
	defer tick.Stop()
	for {
		r.mu.Lock()
		cc, p := r.cc, r.proc
		r.mu.Unlock()
		select {
		case <-r.life.Done():
			return
		case <-tick.C:
			if ok, limit := r.answers(cc, p); !ok {
				r.hung.Store(true)
				r.killHung("a ping", limit)
			}
			continue
		case <-cc.Done():
		}
		cause := cc.Err()
		if r.hung.Swap(false) {
			cause = fmt.Errorf("%w (%w)", errNoAnswer, cause)
		}
		err := r.restart(p, cause, r.closedErr, r.attach)
		cc.Close() // its process is gone; this releases the descriptor
		if err != nil {
			if errors.Is(err, sdk.ErrPluginFailed) {
				if tw, gerr := r.giveUp(err); gerr == nil {
					r.twin.Store(&twinBackend{tw})
				}
			}
			r.mu.Lock()
			close(r.ready) // no replacement: waiters find the twin or the error
			r.mu.Unlock()
			return
		}
	}
}

// callMinGrace is the least a resolver or executor plugin is given to
// answer a ping: more than a selector's minGrace, because its process runs
// user functions. A worker building a 100 MiB result on one P under the
// race detector was seen to leave a ping unanswered past 300 ms, and was
// killed as hung in the middle of a healthy call.
const callMinGrace = 1500 * time.Millisecond

// answers pings the plugin through cc and reports whether it is alive: it
// answered, or frames kept moving on the plane (a large call or result
// ahead of the ping in either direction) until it did, with no gap as long
// as the deadline (the measured ping time's grace, health.go), which it
// also returns. The ping runs on a goroutine of its own, since it may wait
// to be sent behind such a call; the verdict must not wait with it.
func (r *remoteCalls) answers(cc *dataplane.CallClient, p *process) (bool, time.Duration) {
	ctx, cancel := context.WithCancel(r.life)
	defer cancel()
	res := make(chan error, 1)
	t0 := time.Now()
	go func() { res <- cc.Ping(ctx) }()
	limit := min(max(r.clock.grace(r.spec.ReplyTimeout), callMinGrace), r.spec.ReplyTimeout)
	wait := time.NewTimer(limit)
	defer wait.Stop()
	for {
		select {
		case err := <-res:
			if err == nil {
				now := time.Now()
				r.clock.observe(now.Sub(t0))
				p.lastOK.Store(now.UnixNano())
			}
			return true, limit // answered, or the plane ended, which the monitor sees
		case <-r.life.Done():
			return true, limit // stopping is not hanging
		case <-wait.C:
			idle := time.Since(cc.LastMoved())
			if idle >= limit {
				return false, limit
			}
			wait.Reset(limit - idle)
		}
	}
}

// client returns the call plane of a live process, waiting (within ctx)
// while a dead one is being replaced.
func (r *remoteCalls) client(ctx context.Context) (*dataplane.CallClient, *process, error) {
	for {
		if r.twin.Load() != nil {
			return nil, nil, errUseTwin
		}
		if err := r.usable(r.closedErr); err != nil {
			return nil, nil, err
		}
		r.mu.Lock()
		cc, p, ready := r.cc, r.proc, r.ready
		r.mu.Unlock()
		select {
		case <-cc.Done():
		default:
			return cc, p, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// do runs one call on the current process. A call that never left this
// process because the plane had died goes to the next process instead;
// once the in-process twin serves, calls go to it (local).
func (r *remoteCalls) do(ctx context.Context, call func(*dataplane.CallClient) error, local func(any) error) error {
	for {
		cc, p, err := r.client(ctx)
		if errors.Is(err, errUseTwin) {
			return local(r.twin.Load().be)
		}
		if err != nil {
			return err
		}
		err = call(cc)
		switch {
		case err == nil:
			return nil
		case r.life.Err() != nil:
			// Close ran meanwhile: the plugin cancelled the call or died
			// with it, and either way the reason is the Close.
			return fmt.Errorf("%s plugin %q: closed with the call in flight: %w (%w)", r.family, r.name, r.closedErr, err)
		case errors.Is(err, sdk.ErrBackendDied):
			return r.died(p, err)
		case errors.Is(err, dataplane.ErrPeerGone):
			continue // not sent
		}
		return err
	}
}

// died describes the death of p for the calls it took with it: which
// process, and how it ended (once it has been reaped, which takes a moment
// after its socket closed).
func (r *remoteCalls) died(p *process, err error) error {
	select {
	case <-p.run.exited:
	case <-time.After(200 * time.Millisecond):
	}
	return fmt.Errorf("%s plugin %q: worker (pid %d) died during the call (%s): %w", r.family, r.name, p.pid, p.exitStatus(), err)
}

// close stops the plugin and the monitor; calls in flight fail with
// closedErr.
func (r *remoteCalls) close() error {
	if !r.stop() {
		return fmt.Errorf("%s plugin %q: %w", r.family, r.name, r.closedErr)
	}
	<-r.monitorDone
	r.mu.Lock()
	cc := r.cc
	r.mu.Unlock()
	_ = cc.Close()
	if tw := r.twin.Load(); tw != nil {
		if c, ok := tw.be.(io.Closer); ok {
			return c.Close()
		}
	}
	return nil
}

// RemoteResolver is a supervised out-of-process resolver: an sdk.Resolver
// whose back-end runs in a plugin process, reached over a call plane, many
// lookups in flight at once. Launch(ctx, sdk.Resolvers, spec) makes one.
// When the plugin dies, the lookups in flight fail with an error wrapping
// sdk.ErrBackendDied, and later ones go to the restarted plugin.
type RemoteResolver struct{ remoteCalls }

var _ sdk.Resolver = (*RemoteResolver)(nil)

func launchResolver(ctx context.Context, spec Spec) (*RemoteResolver, error) {
	sup, err := newSupervisor(sdk.Resolvers, spec)
	if err != nil {
		return nil, err
	}
	r := &RemoteResolver{}
	if err := r.init(ctx, sup, dataplane.FamilyResolver, net.ErrClosed); err != nil {
		return nil, err
	}
	return r, nil
}

// Getaddrinfo resolves host and port in the plugin (sdk.Resolver).
func (r *RemoteResolver) Getaddrinfo(ctx context.Context, host, port string, hints sdk.AddrinfoHints) (ais []sdk.Addrinfo, err error) {
	err = r.do(ctx, func(cc *dataplane.CallClient) (err error) {
		ais, err = cc.Getaddrinfo(ctx, host, port, hints)
		return err
	}, func(tw any) (err error) {
		ais, err = tw.(sdk.Resolver).Getaddrinfo(ctx, host, port, hints)
		return err
	})
	return ais, err
}

// Getnameinfo looks addr up in the plugin (sdk.Resolver).
func (r *RemoteResolver) Getnameinfo(ctx context.Context, addr netip.AddrPort, flags int) (ni sdk.NameInfo, err error) {
	err = r.do(ctx, func(cc *dataplane.CallClient) (err error) {
		ni, err = cc.Getnameinfo(ctx, addr, flags)
		return err
	}, func(tw any) (err error) {
		ni, err = tw.(sdk.Resolver).Getnameinfo(ctx, addr, flags)
		return err
	})
	return ni, err
}

// Close stops the plugin; lookups in flight and later ones fail with an
// error wrapping net.ErrClosed.
func (r *RemoteResolver) Close() error { return r.close() }

// RemoteExecutor is a supervised out-of-process executor: an sdk.Executor
// whose functions run in a plugin process (this program re-executed, for a
// bundled one, so every function registered with sdk.RegisterFunc is
// there), reached over a call plane, many calls in flight at once.
// Launch(ctx, sdk.Executors, spec) makes one. When the worker process dies,
// the calls it was running fail with an error wrapping sdk.ErrBackendDied
// that says so; later calls go to the restarted worker.
type RemoteExecutor struct{ remoteCalls }

var _ sdk.Executor = (*RemoteExecutor)(nil)

func launchExecutor(ctx context.Context, spec Spec) (*RemoteExecutor, error) {
	sup, err := newSupervisor(sdk.Executors, spec)
	if err != nil {
		return nil, err
	}
	e := &RemoteExecutor{}
	if err := e.init(ctx, sup, dataplane.FamilyExecutor, sdk.ErrExecutorClosed); err != nil {
		return nil, err
	}
	return e, nil
}

// Call runs the function registered under fn in the worker (sdk.Executor).
func (e *RemoteExecutor) Call(ctx context.Context, fn string, arg []byte) (res []byte, err error) {
	if err := ctx.Err(); err != nil {
		// A call cancelled before it was sent never starts.
		return nil, fmt.Errorf("%s plugin %q: call %q: not started: %w", e.family, e.name, fn, err)
	}
	err = e.do(ctx, func(cc *dataplane.CallClient) (err error) {
		res, err = cc.Call(ctx, fn, arg)
		return err
	}, func(tw any) (err error) {
		res, err = tw.(sdk.Executor).Call(ctx, fn, arg)
		return err
	})
	return res, err
}

// Close stops the worker; calls in flight and later ones fail with an
// error wrapping sdk.ErrExecutorClosed.
func (e *RemoteExecutor) Close() error { return e.close() }

// Died describes the end of the worker process for a caller that saw it
// end on a channel of its own rather than on the call plane (the process
// pool's worker channel): an error wrapping sdk.ErrBackendDied that names
// the process and how it ended, once it has been reaped (Died waits up to
// 200ms for that).
func (e *RemoteExecutor) Died() error {
	e.mu.Lock()
	p := e.proc
	e.mu.Unlock()
	return e.died(p, sdk.ErrBackendDied)
}
