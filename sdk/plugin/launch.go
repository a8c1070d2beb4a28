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
	pb "github.com/loopkernel/loopkernel/sdk/proto"
)

// Spec says which plugin to run and how to supervise it. Only Name is
// required; zero durations and counts take the defaults listed.
type Spec struct {
	// Name is the back-end's name. With Path empty it names a bundled
	// back-end (registered in the family's sdk registry) that this executable serves
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
	// (its stderr, forwarded under the plugin's name). Default: none.
	Logger hclog.Logger

	// StartTimeout bounds a start: exec, go-plugin handshake, control
	// handshake, data-plane hello. Default 10s.
	StartTimeout time.Duration
	// StopTimeout bounds Close: past it the plugin is killed. Default 2s.
	StopTimeout time.Duration
	// ReplyTimeout caps how long the plugin may leave the health check of
	// its family unanswered before it is deemed hung and restarted. The
	// deadline itself follows the measured exchange time (health.go): a
	// multiple of the slowest recent exchange, at least 300ms, at most
	// ReplyTimeout; for a selector it runs past the Wait's own timeout (a
	// wait is sliced into 250ms pieces, so a hang inside an indefinite wait
	// is noticed too); a resolver or executor is pinged every 250ms on its
	// call plane (answered by the plugin's reader whatever its calls are
	// doing) and must answer, or keep frames moving, within it. Default 5s.
	ReplyTimeout time.Duration
	// RestartBudget is how long the supervisor keeps trying to bring back a
	// plugin that keeps failing, counted in time rather than attempts: an
	// outage begins at a failure and lasts until a replacement has served
	// for twice MaxBackoff; a failure more than RestartBudget into an
	// outage is final. Default 10s.
	RestartBudget time.Duration
	// MaxRestarts, if positive, also makes the failure after that many
	// restarts within one outage final; zero means no such count (the
	// budget alone decides); negative means never restart.
	MaxRestarts int
	// MaxBackoff caps the delay before a restart, which is zero for the
	// first failure of an outage, then 10ms, doubling with each further
	// failure. Default 2s. A selector's loop keeps running its callbacks
	// and timers during the delay (its Wait sleeps in slices); a call
	// waits for the replacement, within its context.
	MaxBackoff time.Duration
	// Fallback names a back-end of the same family, registered in the
	// family's registry, to run in process when the plugin cannot be kept
	// alive (the restart budget is spent): a selector hands it every live
	// registration, a resolver or executor sends it the calls made from
	// then on, and a warning is logged with the reason. Empty (the
	// default) means the back-end fails instead, with an error wrapping
	// sdk.ErrPluginFailed. policy's PluginFallback picks the plugin's
	// in-process twin.
	Fallback string
	// Standby keeps a second plugin process started and idle, so that a
	// restart adopts it (a data-plane hello, and for a selector the replay
	// of the registrations) instead of starting a process while the loop or
	// the callers wait. It works the same for every family.
	// The price is that second process, started again after every
	// restart. Ignored when MaxRestarts is negative.
	Standby bool
}

// supervisor runs one plugin process at a time for a remote back-end of any
// family: it starts it (checking the pinned digest), kills it when the
// family's health check says it hung, restarts it with backoff when it
// dies, and gives up (or falls back to Spec.Fallback) when an outage has
// outlasted Spec.RestartBudget. What a restart means for the
// calls and registrations of the back-end is the family's business
// (RemoteSelector, RemoteResolver, RemoteExecutor): it passes an attach
// function that adopts the new process's data plane.
//
// The restart policy (budget, backoff) lives in restart.go, the health
// deadline's measure in health.go and its use in each family's check, and
// what follows a give-up (giveUp, then the family's hand-over to the
// twin) in each family's failure path.
type supervisor struct {
	spec   Spec
	family string
	name   string // for messages: Spec.Name, or the executable's base name
	path   string
	env    []string
	logger hclog.Logger

	mu     sync.Mutex // guards proc swaps against Stats and stop
	proc   *process
	closed bool
	gaveUp error // set once, under mu, when the supervisor gives up
	// life is cancelled by stop, ending a restart in progress (its backoff
	// sleep and its start) on another goroutine.
	life   context.Context
	cancel context.CancelFunc
	// cur is the running process for the health check, which kills it from
	// a timer or ticker goroutine.
	cur atomic.Pointer[process]

	// spare is a process started ahead of the next restart (nil without
	// Spec.Standby).
	spare *standby

	// The restart policy's state (restart.go); only the goroutine that
	// handles failures (a selector's loop, a call family's monitor) touches
	// it, except total, which Stats reads under mu.
	outage   time.Time // when the current outage began; zero: none
	failures int       // failures within the outage
	total    int       // restarts over the supervisor's life
	// twin makes the in-process back-end named by Spec.Fallback; nil
	// without one. fellBack is set (under mu) once it has taken over.
	twin     func() (any, error)
	fellBack bool
	// pending holds replacements started but not yet adopted (under mu);
	// stop kills them.
	pending map[*process]bool
	// incidents classifies every failure restart is called for (Incidents).
	incidents incidentLog
	// deadUser and deadSys are the CPU times of plugin processes that have
	// been replaced, so that Stats covers the plugin's whole life.
	deadUser, deadSys time.Duration
}

// errNoAnswer is the cause recorded when the health check killed a plugin.
var errNoAnswer = errors.New("plugin did not answer within its deadline")

// Launch starts the plugin described by spec as a back-end of reg's family
// and returns it supervised: a *RemoteSelector, *RemoteResolver,
// *RemoteExecutor or *RemoteProactor as a T. ctx bounds the start only; the plugin lives until
// the back-end is closed.
func Launch[T any](ctx context.Context, reg *sdk.Registry[T], spec Spec) (T, error) {
	var (
		b   any
		err error
	)
	switch any(reg) {
	case any(sdk.Selectors):
		b, err = launchSelector(ctx, spec)
	case any(sdk.Resolvers):
		b, err = launchResolver(ctx, spec)
	case any(sdk.Executors):
		b, err = launchExecutor(ctx, spec)
	case any(sdk.Proactors):
		b, err = launchProactor(ctx, spec)
	default:
		err = fmt.Errorf("plugin: the %s family cannot run out of process", reg.Family())
	}
	if err != nil {
		var zero T
		return zero, err
	}
	return b.(T), nil
}

func newSupervisor[T any](reg *sdk.Registry[T], spec Spec) (*supervisor, error) {
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
	def(&spec.RestartBudget, 10*time.Second)
	def(&spec.MaxBackoff, 2*time.Second)
	if spec.Logger == nil {
		spec.Logger = hclog.NewNullLogger()
	}
	display := spec.Name
	if display == "" {
		display = filepath.Base(spec.Path)
	}
	s := &supervisor{spec: spec, family: reg.Family(), path: spec.Path, name: display, pending: make(map[*process]bool),
		logger: spec.Logger.With("plugin", display, "family", reg.Family())}
	s.env = []string{envFamily + "=" + s.family}
	if spec.Path == "" {
		if _, ok := reg.Lookup(spec.Name); !ok {
			return nil, fmt.Errorf("plugin: no bundled %s %q (bundled: %v)", s.family, spec.Name, reg.Names())
		}
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("plugin %q: finding this executable to re-execute: %w", spec.Name, err)
		}
		s.path = exe
		s.env = append(s.env, envBundled+"="+spec.Name)
	}
	// The plugin need not produce lines the host would drop.
	switch lvl := spec.Logger.GetLevel(); {
	case lvl == hclog.NoLevel && !spec.Logger.IsError():
		s.env = append(s.env, envLogLevel+"=off") // a null logger
	case lvl != hclog.NoLevel:
		s.env = append(s.env, envLogLevel+"="+lvl.String())
	}
	if spec.Fallback != "" {
		f, ok := reg.Lookup(spec.Fallback)
		if !ok {
			return nil, fmt.Errorf("plugin %q: no in-process %s %q to fall back to (have %v)", display, s.family, spec.Fallback, reg.Names())
		}
		s.twin = func() (any, error) { return f() }
	}
	if spec.SHA256 != "" {
		if _, err := hex.DecodeString(spec.SHA256); err != nil || len(spec.SHA256) != 2*sha256.Size {
			return nil, fmt.Errorf("plugin %q: SHA256 %q is not a hex SHA-256 digest", spec.Name, spec.SHA256)
		}
	}
	s.life, s.cancel = context.WithCancel(context.Background())
	sweepInBackground()
	holdReserve()
	return s, nil
}

// first starts the first process and hands it to attach; on failure
// nothing is left running.
func (s *supervisor) first(ctx context.Context, attach func(*process) error) error {
	p, err := s.start(ctx)
	if err != nil {
		s.cancel()
		return err
	}
	if err := attach(p); err != nil {
		p.kill()
		s.cancel()
		return fmt.Errorf("%s plugin %q: %w", s.family, s.name, err)
	}
	p.attached = time.Now()
	s.proc = p
	s.cur.Store(p)
	if s.spec.Standby && s.spec.MaxRestarts >= 0 {
		s.spare = newStandby(s.start, s.logger.Named("standby"))
		s.spare.fill()
	}
	if s.logger.IsDebug() {
		// One more round trip, worth it only when someone reads it.
		if c, err := p.control.Capabilities(ctx, &pb.CapabilitiesRequest{}); err == nil {
			b := c.GetBuild()
			s.logger.Debug("plugin build", "backend", c.Name, "go", b.GetGoVersion(), "main", b.GetMainPath(),
				"version", b.GetMainVersion(), "revision", b.GetVcsRevision(), "modified", b.GetVcsModified(), "sdk", b.GetSdkVersion())
		}
	}
	return nil
}

// start checks the executable's digest and starts one process.
func (s *supervisor) start(ctx context.Context) (*process, error) {
	if err := checkSHA256(s.path, s.spec.SHA256); err != nil {
		return nil, fmt.Errorf("plugin %q: %w", s.name, err)
	}
	t0 := time.Now()
	p, err := withReserve(func() (*process, error) {
		return startProcess(ctx, &s.spec, s.family, s.name, s.path, s.env)
	})
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

// usable is nil while the back-end may be used, else the error every call
// returns: the give-up error, or closedErr once stopped.
func (s *supervisor) usable(closedErr error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gaveUp != nil {
		return s.gaveUp
	}
	if s.closed {
		return fmt.Errorf("%s plugin %q: %w", s.family, s.name, closedErr)
	}
	return nil
}

// killHung is the health check's verdict: the current process stopped
// answering within deadline, so it is killed, and the family's failure
// path restarts it.
func (s *supervisor) killHung(what string, deadline time.Duration) {
	if p := s.cur.Load(); p != nil {
		s.logger.Warn("plugin did not answer "+what+" in time; killing it", "pid", p.pid, "deadline", deadline)
		_ = p.run.Kill(context.Background())
	}
}

func (s *supervisor) addDeadCPU(p *process) {
	if st := p.run.state; st != nil {
		s.mu.Lock()
		s.deadUser += st.UserTime()
		s.deadSys += st.SystemTime()
		s.mu.Unlock()
	}
}

// stop shuts the plugin down: a Shutdown call, then a kill if it has not
// exited within Spec.StopTimeout. It reports false if it had been stopped
// already. A restart in progress on another goroutine ends with closedErr.
func (s *supervisor) stop() bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.closed = true
	p := s.proc
	pending := s.pending
	s.pending = nil
	s.mu.Unlock()
	s.cancel()
	for q := range pending {
		discard(q, time.Time{})
	}
	deadline := time.Now().Add(s.spec.StopTimeout)
	spareGone := make(chan struct{})
	go func() { s.spare.close(deadline); close(spareGone) }()
	defer func() { <-spareGone }()
	if p.stop(deadline) {
		s.logger.Warn("plugin did not stop within its time limit; killed", "pid", p.pid, "limit", s.spec.StopTimeout)
	}
	s.cur.Store(nil)
	return true
}

// Stats are a plugin's counters and CPU time. The counters are the current
// process's (a restart starts them again); CPU time adds up every process
// the supervisor has run. Which counters move depends on the family.
type Stats struct {
	Pid      int
	Restarts int
	// Selector: waits, readiness events reported, live registrations.
	Waits         uint64
	Events        uint64
	Registrations int64
	// Resolver and executor: calls finished and calls running.
	Calls    uint64
	InFlight int64
	CPUUser  time.Duration
	CPUSys   time.Duration
	// FellBack: the plugin could not be kept alive and the in-process
	// back-end named by Spec.Fallback serves instead; Pid is 0, the
	// counters are zero, Restarts and CPU time cover the plugin's life.
	FellBack bool
}

// Stats asks the plugin for its counters over the control plane (a gRPC
// round trip: call it per benchmark, not per loop iteration or call).
func (s *supervisor) Stats(ctx context.Context) (Stats, error) {
	s.mu.Lock()
	p, closed, restarts, fellBack := s.proc, s.closed, s.total, s.fellBack
	deadUser, deadSys := s.deadUser, s.deadSys
	s.mu.Unlock()
	if closed {
		return Stats{}, fmt.Errorf("%s plugin %q: stats: plugin stopped", s.family, s.name)
	}
	if fellBack {
		return Stats{Restarts: restarts, CPUUser: deadUser, CPUSys: deadSys, FellBack: true}, nil
	}
	r, err := p.control.Stats(ctx, &pb.StatsRequest{})
	if err != nil {
		return Stats{}, fmt.Errorf("%s plugin %q: stats: %w", s.family, s.name, err)
	}
	return Stats{
		Pid:           p.pid,
		Restarts:      restarts,
		Waits:         r.Waits,
		Events:        r.Events,
		Registrations: r.Registrations,
		Calls:         r.Calls,
		InFlight:      r.InFlight,
		CPUUser:       deadUser + time.Duration(r.CpuUserNs),
		CPUSys:        deadSys + time.Duration(r.CpuSysNs),
	}, nil
}
