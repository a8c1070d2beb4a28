package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/dataplane"
	"github.com/loopkernel/loopkernel/sdk/proactorplane"
)

// served is the back-end a plugin process serves, whatever its family: how
// to serve its data plane, close it, and describe it to the control plane.
type served struct {
	family  string
	backend any               // as the factory made it, for Configurer
	sel     *countingSelector // the selector family's, counted
	calls   *callCounter      // the call families'
	handler dataplane.CallHandlers
	pr      sdk.Proactor // the proactor family's, served on the plane
	closer  func() error
}

// newServed makes the back-end of family fam from b; dpFD is the data-plane
// descriptor (a selector watches it, and must not count it).
func newServed(b Backends, fam string, dpFD int) (*served, error) {
	s := &served{family: fam, closer: func() error { return nil }}
	switch {
	case fam == sdk.Selectors.Family() && b.Selector != nil:
		sel, err := b.Selector()
		if err != nil {
			return nil, err
		}
		s.backend, s.sel, s.closer = sel, &countingSelector{Selector: sel, ownFD: dpFD}, sel.Close
	case fam == sdk.Resolvers.Family() && b.Resolver != nil:
		r, err := b.Resolver()
		if err != nil {
			return nil, err
		}
		s.calls = &callCounter{}
		s.backend = r
		s.handler = dataplane.CallHandlers{Name: b.Name, Resolver: countingResolver{r, s.calls}}
		if c, ok := r.(io.Closer); ok {
			s.closer = c.Close
		}
	case fam == sdk.Executors.Family() && b.Executor != nil:
		e, err := b.Executor()
		if err != nil {
			return nil, err
		}
		s.calls = &callCounter{}
		s.backend, s.closer = e, e.Close
		s.handler = dataplane.CallHandlers{Name: b.Name, Executor: countingExecutor{e, s.calls}}
	case fam == sdk.Proactors.Family() && b.Proactor != nil:
		pr, err := b.Proactor()
		if err != nil {
			return nil, err
		}
		// proactorplane.Serve closes pr when it returns; close is for a
		// plane that never ran.
		s.backend, s.pr = pr, pr
	default:
		return nil, fmt.Errorf("this plugin serves %v, not %s=%q", b.families(), envFamily, fam)
	}
	return s, nil
}

// serve runs the data plane until it ends or ctx is cancelled.
func (s *served) serve(ctx context.Context, conn *os.File, logger hclog.Logger) error {
	if s.sel != nil {
		return dataplane.Serve(ctx, conn, s.sel, logger)
	}
	if s.pr != nil {
		return serveProactor(ctx, conn, s.pr)
	}
	return dataplane.ServeCalls(ctx, conn, s.handler, logger)
}

func (s *served) close() error { return s.closer() }

// countingSelector counts what the control plane's Stats reports. Atomic
// adds only: nothing here allocates, so it can sit on the data-plane path.
// The data plane registers its own socket in the selector (so a wake frame
// ends a wait); that registration is the SDK's, not the host's, and is not
// counted.
type countingSelector struct {
	sdk.Selector
	ownFD                                           int
	ownTok                                          atomic.Uint64
	ownSet                                          atomic.Bool
	waits, events, registers, modifies, unregisters atomic.Uint64
	live                                            atomic.Int64
}

func (s *countingSelector) own(tok sdk.Token) bool {
	return s.ownSet.Load() && sdk.Token(s.ownTok.Load()) == tok
}

func (s *countingSelector) Register(fd int, tok sdk.Token, interest sdk.Events) error {
	err := s.Selector.Register(fd, tok, interest)
	if err == nil && fd == s.ownFD && !s.ownSet.Load() {
		s.ownTok.Store(uint64(tok))
		s.ownSet.Store(true)
		return nil
	}
	if err == nil {
		s.registers.Add(1)
		s.live.Add(1)
	}
	return err
}

func (s *countingSelector) Modify(tok sdk.Token, interest sdk.Events) error {
	err := s.Selector.Modify(tok, interest)
	if err == nil && !s.own(tok) {
		s.modifies.Add(1)
	}
	return err
}

func (s *countingSelector) Unregister(tok sdk.Token) error {
	err := s.Selector.Unregister(tok)
	if err == nil && s.own(tok) {
		s.ownSet.Store(false)
		return nil
	}
	if err == nil {
		s.unregisters.Add(1)
		s.live.Add(-1)
	}
	return err
}

func (s *countingSelector) Wait(events []sdk.Event, timeout time.Duration) (int, error) {
	n, err := s.Selector.Wait(events, timeout)
	s.waits.Add(1)
	s.events.Add(uint64(n))
	return n, err
}

// callCounter counts a call family's calls for Stats.
type callCounter struct {
	done     atomic.Uint64
	inFlight atomic.Int64
}

func (c *callCounter) begin() { c.inFlight.Add(1) }
func (c *callCounter) end()   { c.inFlight.Add(-1); c.done.Add(1) }

type countingResolver struct {
	sdk.Resolver
	n *callCounter
}

func (r countingResolver) Getaddrinfo(ctx context.Context, host, port string, hints sdk.AddrinfoHints) ([]sdk.Addrinfo, error) {
	r.n.begin()
	defer r.n.end()
	return r.Resolver.Getaddrinfo(ctx, host, port, hints)
}

func (r countingResolver) Getnameinfo(ctx context.Context, addr netip.AddrPort, flags int) (sdk.NameInfo, error) {
	r.n.begin()
	defer r.n.end()
	return r.Resolver.Getnameinfo(ctx, addr, flags)
}

type countingExecutor struct {
	sdk.Executor
	n *callCounter
}

func (e countingExecutor) Call(ctx context.Context, fn string, arg []byte) ([]byte, error) {
	e.n.begin()
	defer e.n.end()
	return e.Executor.Call(ctx, fn, arg)
}

// serveProactor runs the proactor plane (proactorplane.Serve: the plugin's
// io_uring behind the shared-memory rings) on the data-plane socket, which
// is the plane's control socket. The plane notices a host that went away
// only when it next reads a frame, so a watcher ends it when the host's
// end of the socket closes (a host that gave up on this process).
func serveProactor(ctx context.Context, conn *os.File, pr sdk.Proactor) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	fd := int(conn.Fd())
	go func() {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		for ctx.Err() == nil {
			n, err := unix.Poll(pfd, int(healthSlice/time.Millisecond))
			if err == nil && n > 0 && pfd[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0 {
				cancel(dataplane.ErrPeerGone)
				return
			}
		}
	}()
	err := proactorplane.Serve(ctx, fd, pr)
	runtime.KeepAlive(conn) // its finalizer would close fd under the plane
	if err == nil && errors.Is(context.Cause(ctx), dataplane.ErrPeerGone) {
		return dataplane.ErrPeerGone
	}
	return err
}
