package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
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

// procRunner is our go-plugin runner.Runner: like go-plugin's own command
// runner, except that it forks on the spawner thread with a parent-death
// signal, passes the data-plane socket, and records how the process ended.
type procRunner struct {
	name      string
	cmd       *exec.Cmd
	pluginEnd *os.File // the plugin's end of the data plane; closed here once started
	// The plugin's stdout and stderr: go-plugin reads the parent's ends;
	// the child's ends are closed once it has them (or never will).
	stdout, stderr     io.ReadCloser
	outR, errR         *os.File
	childOut, childErr *os.File
	trace              *startTrace

	pid    int
	exited chan struct{} // closed when the process has been reaped
	state  *os.ProcessState

	// mu orders Start against Kill: a Kill that comes first makes Start
	// fail instead of forking a process nobody wants.
	mu     sync.Mutex
	killed bool
}

func newProcRunner(name string, cmd *exec.Cmd, pluginEnd *os.File, trace *startTrace) (*procRunner, error) {
	cmd.ExtraFiles = []*os.File{pluginEnd} // becomes descriptor 3
	cmd.Env = append(cmd.Env, envDataPlaneFD+"=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: parentDeathSignal}
	r := &procRunner{name: name, cmd: cmd, pluginEnd: pluginEnd, trace: trace, exited: make(chan struct{})}
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
	r.stdout = &firstRead{ReadCloser: r.outR, at: &trace.line}
	r.stderr = r.errR
	return r, nil
}

func (r *procRunner) Start(context.Context) error {
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
	return nil
}

// firstRead stamps the time its first read returns: on the plugin's stdout,
// that is when the go-plugin handshake line arrived. Only go-plugin's
// scanner goroutine reads it, so no lock is needed; the stamp is published
// to startProcess by go-plugin's channel hand-off of the line.
type firstRead struct {
	io.ReadCloser
	at *time.Time
}

func (f *firstRead) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if f.at != nil {
		*f.at, f.at = time.Now(), nil
	}
	return n, err
}

// Wait is called once, by go-plugin, after the output pipes reach EOF.
func (r *procRunner) Wait(context.Context) error {
	err := r.cmd.Wait()
	closeFiles(r.outR, r.errR)
	r.state = r.cmd.ProcessState
	close(r.exited)
	return err
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

func (r *procRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *procRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *procRunner) Name() string          { return r.name }
func (r *procRunner) ID() string            { return strconv.Itoa(r.pid) }
func (r *procRunner) Diagnose(context.Context) string {
	return fmt.Sprintf("plugin %q (%s) did not complete the go-plugin handshake: is it built with loopkernel's sdk/plugin.Serve for this architecture?", r.name, r.cmd.Path)
}

// Host and plugin share one network namespace: addresses need no translation.
func (r *procRunner) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (r *procRunner) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }
