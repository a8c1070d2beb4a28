package plugin

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"google.golang.org/grpc"

	"github.com/loopkernel/loopkernel/sdk/dataplane"
	pb "github.com/loopkernel/loopkernel/sdk/proto"
)

// process is one running plugin process, host side: the go-plugin client
// that owns the process and its socket directory, the control stub, and the
// host's end of the data plane (not yet adopted by a dataplane.Client).
type process struct {
	name    string
	served  string // the back-end name the plugin reported
	client  *goplugin.Client
	run     *procRunner
	control pb.ControlClient
	conn    *os.File // host's end of the data plane
	pid     int
	trace   startTrace
	end     endTrace
	// sockDir is the directory go-plugin made for the plugin's gRPC
	// socket. It is removed as soon as the host has connected (see
	// startProcess), and by every failure path of a start.
	sockDir string
	// attached is when a family adopted the process's data plane, and
	// lastOK (unix nanoseconds) when it last answered its family's health
	// check: how long it served, for the restart policy.
	attached time.Time
	lastOK   atomic.Int64

	// abortMu orders abort against the runner's creation: a start whose
	// ctx is cancelled before the fork never forks.
	abortMu sync.Mutex
	aborted bool

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
	p.client = goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  handshake,
		Plugins:          hostPlugins,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           s.Logger,
		StartTimeout:     startTimeout,
		// go-plugin makes a 0700 directory inside TempDir for the socket and
		// tells the plugin through PLUGIN_UNIX_SOCKET_DIR; we remove it once
		// connected (below), or when the start fails.
		UnixSocketConfig: &goplugin.UnixSocketConfig{TempDir: os.TempDir()},
		// The socket file is gone once the host has connected, so the
		// connection must never be redialled: no idle mode (gRPC's default
		// would close an idle channel after 30 minutes and redial on the
		// next call). The stdio stream go-plugin keeps open holds the
		// channel busy anyway; this makes it explicit.
		GRPCDialOptions: []grpc.DialOption{grpc.WithIdleTimeout(0)},
		RunnerFunc: func(_ hclog.Logger, base *exec.Cmd, goPluginDir string) (runner.Runner, error) {
			// go-plugin's directory, made a moment ago, is not used: a
			// host killed before its plugin could remove it would leave it
			// behind. The plugin makes its own (envSocketDirToMake) once it
			// can be sure to remove it, whatever happens to the host. A
			// host SIGKILLed between go-plugin's MkdirTemp and this Remove
			// still leaves go-plugin's empty (no process exists yet that
			// could remove it; see the package doc): nothing may come
			// before this line.
			_ = os.Remove(goPluginDir)
			p.sockDir = socketDirName(goPluginDir)
			cmd := exec.Command(path, s.Args...)
			cmd.Env = append(base.Env, env...)
			// An empty PLUGIN_UNIX_SOCKET_DIR puts the socket of a plugin
			// built with an older SDK straight into $TMPDIR, where the host
			// removes it once connected, like the directory of a new one.
			cmd.Env = append(cmd.Env, envSocketDir+"=", envSocketDirToMake+"="+p.sockDir)
			r, err := makeRunner(name, cmd, pluginEnd, &p.trace)
			if err != nil {
				return nil, err
			}
			p.abortMu.Lock()
			defer p.abortMu.Unlock()
			if p.aborted {
				// A runner that refuses to start rather than an error here:
				// go-plugin's Kill removes the socket directory only once
				// it has a runner.
				r.killed = true
			}
			p.run = r
			return r, nil
		},
	})
	defer func() {
		if err != nil {
			p.client.Kill()
			// go-plugin's Kill removes the directory only if a runner was
			// started; a start that failed before (no descriptors for the
			// pipes, say) would leave it behind.
			removeSocketDir(p.sockDir)
		}
	}()
	// go-plugin waits for the handshake line up to StartTimeout whatever
	// happens to ctx; killing the process ends that wait.
	stopAbort := context.AfterFunc(ctx, p.abort)
	defer func() {
		if !stopAbort() && err == nil {
			// Too late to undo the kill: the process is no use.
			err = fmt.Errorf("plugin %q: start abandoned: %w", name, context.Cause(ctx))
		}
	}()

	rpc, err := p.client.Client()
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
	p.pid = p.run.pid
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
	if rc := p.client.ReattachConfig(); rc != nil && rc.Addr != nil && rc.Addr.Network() == "unix" {
		if a := rc.Addr.String(); filepath.Dir(a) == filepath.Clean(os.TempDir()) && digitsAfter(filepath.Base(a), "plugin") {
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

// socketDirName is the directory a plugin is told to make for its gRPC
// socket: go-plugin's name for it, in the same place (a sibling of the
// one go-plugin made, with other random digits), so that sweepStale
// recognises it.
func socketDirName(goPluginDir string) string {
	return filepath.Join(filepath.Dir(goPluginDir), fmt.Sprintf("plugin-dir%d", rand.Uint32()))
}

// makeRunner is newProcRunner; a test makes it fail, as running out of
// descriptors for the output pipes would.
var makeRunner = newProcRunner

// abort ends a start in progress: a process not yet forked never will be,
// one already running is killed.
func (p *process) abort() {
	p.abortMu.Lock()
	p.aborted = true
	r := p.run
	p.abortMu.Unlock()
	if r != nil {
		_ = r.Kill(context.Background())
	}
}

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
// closes the gRPC connection and removes the socket directory.
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
