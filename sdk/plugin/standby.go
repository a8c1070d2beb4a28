package plugin

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// standby keeps one plugin process started ahead of need, so that a restart
// adopts it instead of starting one while the loop waits. A start is mostly
// a fixed cost that no code of ours can shorten: exec of the executable, the
// Go runtime's and every package's init (go-plugin, gRPC, protobuf), the
// go-plugin handshake. That is some 20 ms of CPU, and several times that in
// wall time on a busy machine (BenchmarkStart); adopting a standby costs the
// data-plane hello and the replay of the registrations.
//
// The standby is a complete start (spawner thread and parent-death signal,
// SHA-256 check, control handshake, Configure), made by the same function
// as any other; it just happens earlier. Its price is a second, idle
// process per supervised plugin. One that fails to start or dies while
// waiting is not retried until the next adoption: a restart then starts a
// process itself, as it would without a standby.
type standby struct {
	start  func(context.Context) (*process, error)
	logger hclog.Logger

	ctx    context.Context // cancelled by close: ends a start in progress
	cancel context.CancelFunc

	mu      sync.Mutex
	ready   *process      // started, not adopted
	filling chan struct{} // non-nil while a start is in progress; closed when it ends
	closed  bool
}

func newStandby(start func(context.Context) (*process, error), logger hclog.Logger) *standby {
	sb := &standby{start: start, logger: logger}
	sb.ctx, sb.cancel = context.WithCancel(context.Background())
	return sb
}

// fill starts a standby process in the background unless one is ready or
// starting. A nil standby (no restarts) does nothing, here and below.
func (sb *standby) fill() {
	if sb == nil {
		return
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.closed || sb.ready != nil || sb.filling != nil {
		return
	}
	done := make(chan struct{})
	sb.filling = done
	go func() {
		p, err := sb.start(sb.ctx)
		sb.mu.Lock()
		sb.filling = nil
		keep := err == nil && !sb.closed
		if keep {
			sb.ready = p
		}
		sb.mu.Unlock()
		switch {
		case err != nil:
			sb.logger.Debug("standby plugin did not start", "error", err)
		case !keep:
			// close ran meanwhile, too late to abandon this start.
			discard(p, time.Time{})
		}
		close(done)
	}()
}

// take hands over the standby process, waiting for one being started; it
// returns nil if there is none, or it has died, or ctx ends first.
func (sb *standby) take(ctx context.Context) *process {
	if sb == nil {
		return nil
	}
	sb.mu.Lock()
	filling := sb.filling
	sb.mu.Unlock()
	if filling != nil {
		// Never slower than starting another: both run the same binary,
		// and this one has a head start.
		select {
		case <-filling:
		case <-ctx.Done():
			return nil
		}
	}
	sb.mu.Lock()
	p := sb.ready
	sb.ready = nil
	sb.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p.run.exited:
		sb.logger.Warn("standby plugin died while waiting", "pid", p.pid, "exit", p.exitStatus())
		discard(p, time.Time{})
		return nil
	default:
		return p
	}
}

// close stops the standby process, gracefully until deadline, and any start
// in progress, and waits until both are gone. fill does nothing afterwards.
func (sb *standby) close(deadline time.Time) {
	if sb == nil {
		return
	}
	sb.mu.Lock()
	sb.closed = true
	p, filling := sb.ready, sb.filling
	sb.ready = nil
	sb.mu.Unlock()
	sb.cancel()
	if filling != nil {
		<-filling // the cancel makes this prompt: the start is abandoned
	}
	if p != nil {
		discard(p, deadline)
	}
}

// discard stops a process no data-plane client has adopted, and closes the
// host's end of its data plane, which nobody else will.
func discard(p *process, deadline time.Time) {
	p.stop(deadline)
	_ = p.conn.Close()
}
