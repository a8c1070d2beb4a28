package plugin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/dataplane"
	pb "github.com/loopkernel/loopkernel/sdk/proto"
)

// Spec says which plugin to run and how to supervise it. Only Name is
// required; zero durations and counts take the defaults listed.
type Spec struct {
	// Name is the back-end's name. With Path empty it names a bundled
	// back-end (registered with sdk.Register) that this executable serves
	// when re-executed; otherwise the plugin at Path must serve this name,
	// or, if Name is empty, whatever name it serves at the first start
	// (a restart must then serve the same).
	Name string
	// Path is a third-party plugin executable; empty means bundled.
	Path string
	// Args are extra command-line arguments for the plugin.
	Args []string
	// SHA256, hex-encoded, pins the executable's contents: it is checked
	// before every start (restarts included) and a mismatch refuses to run.
	SHA256 string
	// Config is sent with the Configure control call after every start.
	Config map[string]string
	// Logger receives supervision events and the plugin's own log lines
	// (forwarded by go-plugin under the plugin's name). Default: none.
	Logger hclog.Logger

	// StartTimeout bounds a start: exec, go-plugin handshake, control
	// handshake, data-plane hello. Default 10s.
	StartTimeout time.Duration
	// StopTimeout bounds Close: past it the plugin is killed. Default 2s.
	StopTimeout time.Duration
	// ReplyTimeout is how long past its own timeout a Wait may go
	// unanswered before the plugin is deemed hung and restarted. Default 5s.
	ReplyTimeout time.Duration
	// MaxRestarts is how many restarts RestartWindow may hold; the failure
	// after that is final. Default 5; negative means never restart.
	MaxRestarts int
	// RestartWindow is the period MaxRestarts counts over. Default 1m.
	RestartWindow time.Duration
	// MaxBackoff caps the delay before a restart, which starts at zero for
	// the first failure in the window, then 10ms, doubling. Default 1s.
	MaxBackoff time.Duration
	// Standby keeps a second plugin process started and idle, so that a
	// restart adopts it (a data-plane hello and the replay of the
	// registrations) instead of starting a process while the loop waits.
	// The price is that second process, started again after every
	// restart, and with each such start the window the package
	// documentation describes (a host that dies while a plugin is still
	// starting leaves its empty socket directory). Ignored when
	// MaxRestarts is negative.
	Standby bool
}

const (
	firstBackoff = 10 * time.Millisecond
	// waitSlice bounds one data-plane Wait, so that a plugin hung inside an
	// indefinite wait is noticed within waitSlice+ReplyTimeout. An idle
	// loop pays one round trip per slice.
	waitSlice = time.Second
)

// Selector is a supervised out-of-process selector: an sdk.Selector whose
// back-end runs in a plugin process, restarted when it dies or stops
// answering. It is what Launch returns.
//
// When the plugin fails, Wait kills it, starts a new one, hands it every
// live registration and returns 0, nil: the kernel's loop simply iterates
// again, and since readiness is level-triggered no event is lost. Once the
// plugin has failed more often than Spec allows, Wait returns an error
// wrapping sdk.ErrPluginFailed, and keeps returning it.
type Selector struct {
	spec   Spec
	name   string // for messages: Spec.Name, or the executable's base name
	path   string
	env    []string
	logger hclog.Logger
	dp     *dataplane.Client

	mu     sync.Mutex // guards proc swaps against Stats and Close
	proc   *process
	closed bool
	// life is cancelled by Close, ending a restart in progress (its backoff
	// sleep and its start) on another goroutine.
	life   context.Context
	cancel context.CancelFunc

	// The watchdog kills a plugin that does not answer a Wait in time; it
	// runs on a timer goroutine, hence the atomics.
	cur      atomic.Pointer[process]
	watchdog *time.Timer
	woken    atomic.Bool

	// spare is a process started ahead of the next restart (nil without
	// Spec.Standby).
	spare *standby

	failed   error
	restarts []time.Time // restart times within RestartWindow
	total    int
	// deadUser and deadSys are the CPU times of plugin processes that have
	// been replaced, so that Stats covers the plugin's whole life.
	deadUser, deadSys time.Duration
}

var _ sdk.Selector = (*Selector)(nil)

// errNoAnswer is the cause recorded when the watchdog killed a plugin.
var errNoAnswer = errors.New("plugin did not answer within its deadline")

// Launch starts the plugin described by spec and returns its supervised
// selector. ctx bounds the start only; the plugin lives until Close.
func Launch(ctx context.Context, spec Spec) (*Selector, error) {
	s, err := newSupervised(spec)
	if err != nil {
		return nil, err
	}
	p, err := s.start(ctx)
	if err != nil {
		s.cancel()
		return nil, err
	}
	dp, err := dataplane.NewClient(p.conn, s.logger.Named("dataplane"))
	if err != nil {
		p.kill()
		s.cancel()
		return nil, fmt.Errorf("plugin %q: %w", s.name, err)
	}
	s.dp = dp
	s.proc = p
	s.cur.Store(p)
	s.watchdog = time.AfterFunc(time.Hour, s.onNoAnswer)
	s.watchdog.Stop()
	if s.spec.Standby && s.spec.MaxRestarts >= 0 {
		s.spare = newStandby(s.start, s.logger.Named("standby"))
		s.spare.fill()
	}
	if s.logger.IsDebug() {
		// One more round trip, worth it only when someone reads it.
		if c, err := p.control.Capabilities(ctx, &pb.CapabilitiesRequest{}); err == nil {
			b := c.GetBuild()
			s.logger.Debug("plugin build", "selector", c.Name, "go", b.GetGoVersion(), "main", b.GetMainPath(),
				"version", b.GetMainVersion(), "revision", b.GetVcsRevision(), "modified", b.GetVcsModified(), "sdk", b.GetSdkVersion())
		}
	}
	return s, nil
}

func newSupervised(spec Spec) (*Selector, error) {
	if spec.Name == "" && spec.Path == "" {
		return nil, errors.New("plugin: Spec.Name and Spec.Path are both empty")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&spec.StartTimeout, 10*time.Second)
	def(&spec.StopTimeout, 2*time.Second)
	def(&spec.ReplyTimeout, 5*time.Second)
	def(&spec.RestartWindow, time.Minute)
	def(&spec.MaxBackoff, time.Second)
	if spec.MaxRestarts == 0 {
		spec.MaxRestarts = 5
	}
	if spec.Logger == nil {
		spec.Logger = hclog.NewNullLogger()
	}
	display := spec.Name
	if display == "" {
		display = filepath.Base(spec.Path)
	}
	s := &Selector{spec: spec, path: spec.Path, name: display, logger: spec.Logger.With("plugin", display)}
	s.life, s.cancel = context.WithCancel(context.Background())
	if spec.Path == "" {
		if _, ok := sdk.Selectors.Lookup(spec.Name); !ok {
			return nil, fmt.Errorf("plugin: no bundled selector %q (bundled: %v)", spec.Name, sdk.Selectors.Names())
		}
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("plugin %q: finding this executable to re-execute: %w", spec.Name, err)
		}
		s.path = exe
		s.env = []string{envBundled + "=" + spec.Name}
	}
	// The plugin need not produce lines the host would drop.
	switch lvl := spec.Logger.GetLevel(); {
	case lvl == hclog.NoLevel && !spec.Logger.IsError():
		s.env = append(s.env, envLogLevel+"=off") // a null logger
	case lvl != hclog.NoLevel:
		s.env = append(s.env, envLogLevel+"="+lvl.String())
	}
	if spec.SHA256 != "" {
		if _, err := hex.DecodeString(spec.SHA256); err != nil || len(spec.SHA256) != 2*sha256.Size {
			return nil, fmt.Errorf("plugin %q: SHA256 %q is not a hex SHA-256 digest", spec.Name, spec.SHA256)
		}
	}
	return s, nil
}

// start checks the executable's digest and starts one process.
func (s *Selector) start(ctx context.Context) (*process, error) {
	if err := checkSHA256(s.path, s.spec.SHA256); err != nil {
		return nil, fmt.Errorf("plugin %q: %w", s.name, err)
	}
	t0 := time.Now()
	p, err := startProcess(ctx, &s.spec, s.name, s.path, s.env)
	if err != nil {
		return nil, err
	}
	if s.spec.Name == "" {
		s.spec.Name = p.served // restarts must serve the same back-end
	}
	s.logger.Debug("plugin process started", append([]any{"pid", p.pid, "path", s.path, "took", time.Since(t0)}, p.trace.logArgs()...)...)
	return p, nil
}

// ErrChecksum is returned when a plugin executable does not match Spec.SHA256.
var ErrChecksum = errors.New("plugin executable does not match its pinned SHA-256")

func checkSHA256(path, want string) error {
	if want == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("checksumming plugin: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("checksumming %s: %w", path, err)
	}
	wantSum, _ := hex.DecodeString(want)
	if got := h.Sum(nil); subtle.ConstantTimeCompare(got, wantSum) != 1 {
		return fmt.Errorf("%w: %s has sha256 %x, want %s", ErrChecksum, path, got, want)
	}
	return nil
}

// Register, Modify and Unregister only update the data-plane client's
// table (the source of truth a restart re-sends); they never talk to the
// plugin, so a dead plugin cannot make them fail.
func (s *Selector) Register(fd int, tok sdk.Token, interest sdk.Events) error {
	if err := s.usable(); err != nil {
		return err
	}
	return s.dp.Register(fd, tok, interest)
}

func (s *Selector) Modify(tok sdk.Token, interest sdk.Events) error {
	if err := s.usable(); err != nil {
		return err
	}
	return s.dp.Modify(tok, interest)
}

func (s *Selector) Unregister(tok sdk.Token) error {
	if err := s.usable(); err != nil {
		return err
	}
	return s.dp.Unregister(tok)
}

func (s *Selector) usable() error {
	if s.failed != nil {
		return s.failed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("plugin %q: %w", s.name, sdk.ErrClosed)
	}
	return nil
}

// Wait waits on the plugin. A failed plugin is replaced here, on the loop
// goroutine, and the Wait returns 0, nil so the loop iterates again.
func (s *Selector) Wait(events []sdk.Event, timeout time.Duration) (int, error) {
	if err := s.usable(); err != nil {
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
			return 0, s.recover(errNoAnswer)
		}
		if err != nil {
			if errors.Is(err, sdk.ErrClosed) {
				return 0, err
			}
			return 0, s.recover(err)
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

// Wake is safe from any goroutine. While the plugin is being replaced the
// data plane has no connection and the wake cannot be sent; that is fine,
// because the Wait doing the replacing returns 0 anyway.
func (s *Selector) Wake() error {
	s.woken.Store(true)
	if err := s.dp.Wake(); err != nil && errors.Is(err, sdk.ErrClosed) {
		return err
	}
	return nil
}

// Capabilities are the plugin selector's, as reported in the data-plane hello.
func (s *Selector) Capabilities() sdk.Capabilities { return s.dp.Capabilities() }

func (s *Selector) onNoAnswer() {
	if p := s.cur.Load(); p != nil {
		s.logger.Warn("plugin did not answer a wait in time; killing it", "pid", p.pid, "reply_timeout", s.spec.ReplyTimeout)
		_ = p.run.Kill(context.Background())
	}
}

// recover replaces a failed plugin, or gives up. It returns nil once a new
// plugin holds every live registration.
func (s *Selector) recover(cause error) error {
	s.mu.Lock()
	old := s.proc
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("plugin %q: %w", s.name, sdk.ErrClosed)
	}
	old.kill()
	s.addDeadCPU(old)
	pid, status := old.pid, old.exitStatus()
	errClosed := fmt.Errorf("plugin %q: %w", s.name, sdk.ErrClosed)
	for {
		if s.life.Err() != nil {
			return errClosed
		}
		now := time.Now()
		kept := s.restarts[:0]
		for _, t := range s.restarts {
			if now.Sub(t) < s.spec.RestartWindow {
				kept = append(kept, t)
			}
		}
		s.restarts = kept
		if s.spec.MaxRestarts < 0 || len(s.restarts) >= s.spec.MaxRestarts {
			s.failed = fmt.Errorf("plugin %q (pid %d, %s) failed after %d restarts (%d within %s): %w: %w",
				s.name, pid, status, s.total, len(s.restarts), s.spec.RestartWindow, sdk.ErrPluginFailed, cause)
			s.logger.Error("plugin failed too often; giving up", "pid", pid, "exit", status, "restarts", s.total, "error", cause)
			s.spare.close(time.Time{})
			return s.failed
		}
		delay := time.Duration(0)
		if k := len(s.restarts); k > 0 {
			delay = min(firstBackoff<<(k-1), s.spec.MaxBackoff)
		}
		s.logger.Warn("plugin failed; restarting", "pid", pid, "exit", status, "error", cause, "restart", s.total+1, "backoff", delay)
		select {
		case <-time.After(delay):
		case <-s.life.Done():
			return errClosed
		}
		s.restarts = append(s.restarts, time.Now())
		s.mu.Lock()
		s.total++ // Stats reads it from other goroutines
		s.mu.Unlock()

		t0 := time.Now()
		p, err := s.spare.take(s.life), error(nil)
		adopted := p != nil
		if !adopted {
			p, err = s.start(s.life)
		}
		if err == nil {
			if err = s.dp.Replace(p.conn); err != nil {
				p.kill()
				s.addDeadCPU(p)
			}
		}
		if err == nil {
			s.mu.Lock()
			if s.closed {
				// Close ran meanwhile and stopped the old process; this
				// one is nobody's.
				s.mu.Unlock()
				p.kill()
				return errClosed
			}
			s.proc = p
			s.mu.Unlock()
			s.cur.Store(p)
			s.logger.Info("plugin restarted", "pid", p.pid, "restart", s.total, "standby", adopted, "took", time.Since(t0))
			s.spare.fill()
			return nil
		}
		cause, status = err, "did not start"
		if p != nil {
			pid, status = p.pid, p.exitStatus()
		}
	}
}

func (s *Selector) addDeadCPU(p *process) {
	if st := p.run.state; st != nil {
		s.mu.Lock()
		s.deadUser += st.UserTime()
		s.deadSys += st.SystemTime()
		s.mu.Unlock()
	}
}

// Close shuts the plugin down: a Shutdown call, then a kill if it has not
// exited within Spec.StopTimeout. It never closes registered descriptors.
// It may be called from another goroutine than the loop's: a Wait blocked
// there, or replacing a failed plugin, returns an error wrapping
// sdk.ErrClosed.
func (s *Selector) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("plugin %q: %w", s.name, sdk.ErrClosed)
	}
	s.closed = true
	p := s.proc
	s.mu.Unlock()
	s.cancel()
	deadline := time.Now().Add(s.spec.StopTimeout)
	spareGone := make(chan struct{})
	go func() { s.spare.close(deadline); close(spareGone) }()
	defer func() { <-spareGone }()
	if p.stop(deadline) {
		s.logger.Warn("plugin did not stop within its time limit; killed", "pid", p.pid, "limit", s.spec.StopTimeout)
	}
	s.cur.Store(nil)
	if err := s.dp.Close(); err != nil && !errors.Is(err, sdk.ErrClosed) {
		return fmt.Errorf("plugin %q: %w", s.name, err)
	}
	return nil
}

// Stats are the plugin's counters and CPU time. The counters are the
// current process's (a restart starts them again); CPU time adds up every
// process this Selector has run.
type Stats struct {
	Pid           int
	Restarts      int
	Waits         uint64
	Events        uint64
	Registrations int64
	CPUUser       time.Duration
	CPUSys        time.Duration
}

// Stats asks the plugin for its counters over the control plane (a gRPC
// round trip: call it per benchmark, not per loop iteration).
func (s *Selector) Stats(ctx context.Context) (Stats, error) {
	s.mu.Lock()
	p, closed, restarts := s.proc, s.closed, s.total
	deadUser, deadSys := s.deadUser, s.deadSys
	s.mu.Unlock()
	if closed {
		return Stats{}, fmt.Errorf("plugin %q: stats: %w", s.name, sdk.ErrClosed)
	}
	r, err := p.control.Stats(ctx, &pb.StatsRequest{})
	if err != nil {
		return Stats{}, fmt.Errorf("plugin %q: stats: %w", s.name, err)
	}
	return Stats{
		Pid:           p.pid,
		Restarts:      restarts,
		Waits:         r.Waits,
		Events:        r.Events,
		Registrations: r.Registrations,
		CPUUser:       deadUser + time.Duration(r.CpuUserNs),
		CPUSys:        deadSys + time.Duration(r.CpuSysNs),
	}, nil
}
