package plugin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// spawner is one goroutine locked to one OS thread for the life of the
// process; every plugin is forked from it. PR_SET_PDEATHSIG is tied to the
// thread that forked the child: if a plugin were forked from whatever thread
// the calling goroutine happened to run on, the runtime could later retire
// that thread (it does when a goroutine exits while locked to it) and the
// plugin would be told its parent died while the host is alive and well.
var spawner struct {
	once sync.Once
	reqs chan func()
}

func onSpawnerThread(f func()) {
	spawner.once.Do(func() {
		spawner.reqs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread must outlive every child
			for g := range spawner.reqs {
				g()
			}
		}()
	})
	done := make(chan struct{})
	spawner.reqs <- func() { f(); close(done) }
	<-done
}

// parentDeathSignal is what a plugin receives when its host dies
// (PR_SET_PDEATHSIG). It is SIGWINCH, not SIGTERM, because SIGWINCH is
// ignored by default at every stage of a process's start, in the kernel
// and in the Go runtime: a plugin still starting (before Serve has
// installed its handler) survives it, goes on to find its data plane
// closed, and exits through the same path, removing its socket directory;
// SIGTERM would kill it on the spot and leave the directory behind. Once
// Serve runs, it handles SIGWINCH like SIGTERM.
const parentDeathSignal = syscall.SIGWINCH

// procRunner starts and reaps one plugin process: it forks on the spawner
// thread with a parent-death signal, passes the data-plane socket, reads the
// go-plugin handshake line from the plugin's stdout, forwards the plugin's
// log lines from its stderr to the host's logger, and records how the
// process ended. go-plugin is attached to the running process afterwards
// (attach.go) and uses it as its runner.AttachedRunner.
type procRunner struct {
	name      string
	cmd       *exec.Cmd
	pluginEnd *os.File // the plugin's end of the data plane; closed here once started
	logger    hclog.Logger
	// The plugin's stdout and stderr: the parent's ends are read here; the
	// child's ends are closed once it has them (or never will).
	outR, errR         *os.File
	childOut, childErr *os.File
	trace              *startTrace

	// line delivers the first line of the plugin's stdout (its go-plugin
	// handshake line), or the error that ended stdout before one came.
	line chan lineOrErr

	pid     int
	exited  chan struct{} // closed when the process has been reaped
	state   *os.ProcessState
	waitErr error

	// mu orders Start against Kill: a Kill that comes first makes Start
	// fail instead of forking a process nobody wants.
	mu     sync.Mutex
	killed bool
}

type lineOrErr struct {
	line string
	err  error
}

func newProcRunner(name string, cmd *exec.Cmd, pluginEnd *os.File, trace *startTrace, logger hclog.Logger) (*procRunner, error) {
	cmd.ExtraFiles = []*os.File{pluginEnd} // becomes descriptor 3
	cmd.Env = append(cmd.Env, envDataPlaneFD+"=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: parentDeathSignal}
	r := &procRunner{name: name, cmd: cmd, pluginEnd: pluginEnd, trace: trace, logger: logger,
		line: make(chan lineOrErr, 1), exited: make(chan struct{})}
	// Our own pipes rather than cmd.StdoutPipe, so that a runner that is
	// never started can still close them.
	var err error
	if r.outR, r.childOut, err = os.Pipe(); err != nil {
		return nil, err
	}
	if r.errR, r.childErr, err = os.Pipe(); err != nil {
		closeFiles(r.outR, r.childOut)
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = r.childOut, r.childErr
	return r, nil
}

// Start forks the process and starts reading its output and waiting for
// its end. A runner killed before Start never forks.
func (r *procRunner) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	if r.killed {
		err = errors.New("killed before it was started")
	} else {
		onSpawnerThread(func() { err = r.cmd.Start() })
	}
	// The host must not keep the plugin's ends open, or it would never see
	// end-of-file on its own when the plugin dies.
	closeFiles(r.pluginEnd, r.childOut, r.childErr)
	if err != nil {
		closeFiles(r.outR, r.errR)
		close(r.exited)
		return err // fork/exec PATH: ...; the caller names the plugin
	}
	r.pid = r.cmd.Process.Pid
	raiseChildLimit(r.pid)
	r.trace.spawned = time.Now()

	var outputs sync.WaitGroup
	outputs.Add(2)
	go func() { defer outputs.Done(); r.readStdout() }()
	go func() { defer outputs.Done(); forwardLog(r.logger.Named(filepath.Base(r.name)), r.errR) }()
	go func() {
		// The pipes first: the last lines a plugin logs before it exits
		// must reach the logger before its end is reported.
		outputs.Wait()
		r.waitErr = r.cmd.Wait()
		closeFiles(r.outR, r.errR)
		r.state = r.cmd.ProcessState
		close(r.exited)
	}()
	return nil
}

// readStdout hands the first line of the plugin's stdout to r.line, then
// discards the rest (go-plugin's Serve sends the plugin's own stdout over
// gRPC; anything else written to descriptor 1 is of no use), so that a
// plugin writing there never blocks on a full pipe.
func (r *procRunner) readStdout() {
	sc := bufio.NewScanner(r.outR)
	if sc.Scan() {
		r.line <- lineOrErr{line: sc.Text()}
	} else {
		err := sc.Err()
		if err == nil {
			err = io.EOF
		}
		r.line <- lineOrErr{err: err}
	}
	_, _ = io.Copy(io.Discard, r.outR)
}

// Wait returns once the process has been reaped, with cmd.Wait's error.
// go-plugin calls it once it is attached, to learn when the plugin exits.
func (r *procRunner) Wait(context.Context) error {
	<-r.exited
	return r.waitErr
}

func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}

// Kill sends SIGKILL; a process already gone is not an error, and one not
// yet started never will be.
func (r *procRunner) Kill(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.killed = true
	if r.cmd.Process == nil {
		return nil
	}
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// exitStatus describes how the process ended, for error messages.
func (r *procRunner) exitStatus() string {
	select {
	case <-r.exited:
		if r.state == nil {
			return "not started"
		}
		return r.state.String()
	default:
		return "running"
	}
}

// ID is the pid, as go-plugin's Kill wants one: a runner without an ID is
// never killed.
func (r *procRunner) ID() string { return strconv.Itoa(r.pid) }

// diagnose is appended to the error of a start whose handshake line was
// missing or malformed.
func (r *procRunner) diagnose() string {
	return fmt.Sprintf("plugin %q (%s) did not complete the go-plugin handshake: is it built with loopkernel's sdk/plugin.Serve for this architecture?", r.name, r.cmd.Path)
}

// Host and plugin share one network namespace: addresses need no translation.
func (r *procRunner) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (r *procRunner) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }
