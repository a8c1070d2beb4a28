package plugin

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/loopkernel/loopkernel/sdk/dataplane"
	pb "github.com/loopkernel/loopkernel/sdk/proto"
)

// process is one running plugin process, host side: our runner that
// started it, the go-plugin client attached to it, the control stub, and
// the host's end of the data plane (not yet adopted by a dataplane.Client).
type process struct {
	name    string
	served  string // the back-end name the plugin reported
	client  *goplugin.Client
	run     *procRunner
	control pb.ControlClient
	conn    *os.File // host's end of the data plane
	pid     int
	addr    net.Addr // the plugin's gRPC address, from its handshake line
	trace   startTrace
	end     endTrace
	// sockDir is the directory the plugin is told to make for its gRPC
	// socket. It is removed as soon as the host has connected (see
	// startProcess), and by every failure path of a start.
	sockDir string
	// attached is when a family adopted the process's data plane, and
	// lastOK (unix nanoseconds) when it last answered its family's health
	// check: how long it served, for the restart policy.
	attached time.Time
	lastOK   atomic.Int64

	stopOnce sync.Once
}

// startTrace records when each stage of one start ended, so that its cost
// can be broken down (the supervisor's debug log, BenchmarkStart). Taking
// the timestamps costs well under a microsecond per start.
type startTrace struct {
	begin     time.Time // startProcess entered
	spawned   time.Time // fork and exec done (the runner's Start returned)
	line      time.Time // the go-plugin handshake line arrived on stdout
	dialed    time.Time // go-plugin's gRPC client connected, control stub dispensed
	handshook time.Time // the control Handshake answered
	ready     time.Time // Configure answered, or skipped: startProcess returns
}

// logArgs are the stage durations as hclog key/value pairs.
func (t *startTrace) logArgs() []any {
	return []any{
		"spawn", t.spawned.Sub(t.begin), "handshake_line", t.line.Sub(t.spawned),
		"dial", t.dialed.Sub(t.line), "control_handshake", t.handshook.Sub(t.dialed),
		"configure", t.ready.Sub(t.handshook),
	}
}

// startProcess starts one plugin process and completes the control
// handshake. ctx bounds the start: once it is done, the process is killed
// (or never forked) and startProcess returns an error, at once rather than
// after Spec.StartTimeout.
func startProcess(ctx context.Context, s *Spec, family, name, path string, env []string) (_ *process, err error) {
	hostEnd, pluginEnd, err := dataplane.Socketpair()
	if err != nil {
		return nil, fmt.Errorf("plugin %q: data-plane socketpair: %w", name, err)
	}
	defer func() {
		if err != nil {
			_ = hostEnd.Close()
			_ = pluginEnd.Close() // no-op once the runner has started
		}
	}()

	p := &process{name: name, conn: hostEnd}
	p.trace.begin = time.Now()
	startTimeout := s.StartTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < startTimeout {
		startTimeout = time.Until(dl)
	}
	// The plugin makes its own socket directory (envSocketDirToMake) and
	// removes it however the host ends; nothing exists on disk before the
	// fork. go-plugin's Start would make a directory of its own before any
	// plugin exists (one a host killed at that moment leaves behind), so
	// the process is started here and go-plugin attached to it (attach.go).
	p.sockDir = filepath.Join(os.TempDir(), fmt.Sprintf("plugin-dir%d", rand.Uint32()))
	cmd := exec.Command(path, s.Args...)
	cmd.Env = append(pluginEnv(), env...)
	// An empty PLUGIN_UNIX_SOCKET_DIR puts the socket of a plugin built with
	// an older SDK straight into $TMPDIR, where the host removes it once
	// connected, like the directory of a new one.
	cmd.Env = append(cmd.Env, envSocketDir+"=", envSocketDirToMake+"="+p.sockDir)
	r, err := makeRunner(name, cmd, pluginEnd, &p.trace, s.Logger)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: starting %s: %w", name, path, err)
	}
	p.run = r
	defer func() {
		if err != nil {
			p.abandon()
		}
	}()
	// Once ctx is done the process is killed (or, before the fork, never
	// forked: Kill first makes Start refuse), which ends every wait below.
	stopAbort := context.AfterFunc(ctx, p.abort)
	defer func() {
		if !stopAbort() && err == nil {
			// Too late to undo the kill: the process is no use.
			err = fmt.Errorf("plugin %q: start abandoned: %w", name, context.Cause(ctx))
		}
	}()
	if err := r.Start(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("plugin %q: start abandoned: %w", name, context.Cause(ctx))
		}
		return nil, fmt.Errorf("plugin %q: starting %s: %w", name, path, err)
	}
	p.pid = r.pid

	rpc, err := p.attach(s.Logger, startTimeout)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("plugin %q: start abandoned: %w", name, context.Cause(ctx))
		}
		return nil, fmt.Errorf("plugin %q: starting %s: %w", name, path, err)
	}
	raw, err := rpc.Dispense(family)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: %w", name, err)
	}
	p.control = raw.(familyClient).ControlClient
	p.trace.dialed = time.Now()

	hctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	hs, err := p.control.Handshake(hctx, &pb.HandshakeRequest{
		ControlVersion:   controlVersion,
		DataplaneVersion: dataplaneVersion,
		PluginName:       s.Name, // empty: any
		Family:           family,
	})
	if err != nil {
		return nil, fmt.Errorf("plugin %q: handshake: %w", name, err)
	}
	p.trace.handshook = time.Now()
	// Connected: the socket's name is of no more use, and a directory in
	// $TMPDIR is litter if host and plugin are killed together (a process
	// group, cgroup or OOM kill), when neither can remove it.
	removeSocketDir(p.sockDir)
	if p.addr != nil && p.addr.Network() == "unix" {
		if a := p.addr.String(); filepath.Dir(a) == filepath.Clean(os.TempDir()) && digitsAfter(filepath.Base(a), "plugin") {
			_ = os.Remove(a) // an older plugin's socket, made without a directory
		}
	}
	p.served = hs.PluginName
	if int(hs.Pid) != p.pid {
		return nil, fmt.Errorf("plugin %q: handshake answered by pid %d, started pid %d", name, hs.Pid, p.pid)
	}
	if len(s.Config) > 0 {
		if _, err := p.control.Configure(hctx, &pb.ConfigureRequest{Settings: s.Config}); err != nil {
			return nil, fmt.Errorf("plugin %q: configure: %w", name, err)
		}
	}
	p.trace.ready = time.Now()
	return p, nil
}

// makeRunner is newProcRunner; a test makes it fail, as running out of
// descriptors for the output pipes would.
var makeRunner = newProcRunner

// abandon undoes a failed start: the process killed and reaped,
// go-plugin's client (if attached) closed, the socket directory removed.
func (p *process) abandon() {
	if p.run != nil {
		_ = p.run.Kill(context.Background())
		<-p.run.exited
	}
	if p.client != nil {
		p.client.Kill()
	}
	removeSocketDir(p.sockDir)
}

// abort ends a start in progress: a process not yet forked never will be,
// one already running is killed.
func (p *process) abort() { _ = p.run.Kill(context.Background()) }

// endTrace records how the supervisor ended a process it replaces, for the
// restart breakdown.
type endTrace struct {
	kill    time.Time // kill called: the supervisor has noticed the failure
	reaped  time.Time // the process has been reaped
	cleaned time.Time // go-plugin's client is closed, the socket directory gone
}

// kill ends the process at once and waits until it has been reaped.
func (p *process) kill() {
	p.end.kill = time.Now()
	_ = p.run.Kill(context.Background())
	<-p.run.exited
	p.end.reaped = time.Now()
	p.stop(time.Time{})
	p.end.cleaned = time.Now()
}

// stop shuts the process down: with a deadline, gracefully first (Shutdown
// RPC, then wait for the exit), and killed once the deadline passes. It
// reports whether the process had to be killed. go-plugin's Kill afterwards
// finds the process gone, so its own two-second grace never applies; it
// closes the gRPC connection (the socket directory went when the host
// connected).
func (p *process) stop(deadline time.Time) (killed bool) {
	p.stopOnce.Do(func() {
		if !deadline.IsZero() {
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			_, _ = p.control.Shutdown(ctx, &pb.ShutdownRequest{DeadlineUnixNs: deadline.UnixNano()})
			select {
			case <-p.run.exited:
			case <-ctx.Done():
			}
			cancel()
		}
		select {
		case <-p.run.exited:
		default:
			killed = true
			_ = p.run.Kill(context.Background())
			<-p.run.exited
		}
		p.client.Kill()
	})
	return killed
}

// exitStatus is how the process ended ("signal: killed", "exit status 2").
func (p *process) exitStatus() string { return p.run.exitStatus() }
