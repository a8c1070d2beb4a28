package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Subprocesses (asyncio's subprocess_exec and subprocess_shell, its
// SubprocessTransport and SubprocessProtocol).
//
// A child's standard streams that are pipes get pipe transports
// (kernel/pipe.go), so their bytes move on the loop's I/O driver like any
// other stream's. The child itself is watched through a pidfd (Linux 5.3
// or later) that the loop's driver watches for readability, which is how
// the kernel says the child has exited; it is then reaped with
// waitid(P_PIDFD), exactly once, by the loop. No SIGCHLD handler is
// installed, so the loop never reaps (or steals the exit of) a child it
// did not start, and os/exec keeps working beside it. See
// kernel/subprocess_reap.go for what happens on a driver without the
// watch capability and when the loop is closed with children running.

// SubprocessProtocol is the protocol of a child process
// (asyncio.SubprocessProtocol). ConnectionMade receives a
// SubprocessTransport. Every method runs on the loop.
type SubprocessProtocol interface {
	BaseProtocol
	// PipeDataReceived is called with bytes the child wrote to its stdout
	// (fd 1) or stderr (fd 2); data is valid during the call only.
	PipeDataReceived(fd int, data []byte)
	// PipeConnectionLost is called once per pipe when it closes: err is
	// nil at the end of the stream or on a close, else what ended it.
	PipeConnectionLost(fd int, err error)
	// ProcessExited is called once the child has exited and been reaped.
	ProcessExited()
}

// SubprocessTransport is the transport of a child process
// (asyncio.SubprocessTransport). ConnectionLost(nil) reaches the protocol
// only once the child has exited and every one of its pipes is closed.
type SubprocessTransport interface {
	BaseTransport
	// GetPid returns the child's process id.
	GetPid() int
	// GetReturncode returns the child's return code and true once it has
	// exited: its exit status, or minus the signal that killed it.
	GetReturncode() (int, bool)
	// GetPipeTransport returns the transport of the child's fd 0 (a
	// WriteTransport), 1 or 2 (ReadTransports), or nil if that stream is
	// not a pipe.
	GetPipeTransport(fd int) BaseTransport
	// SendSignal sends sig to the child. Once the child has exited it fails
	// with an error matching ErrProcessLookup (and syscall.ESRCH) instead
	// of signalling whatever process may now have its pid.
	SendSignal(sig syscall.Signal) error
	// Terminate sends SIGTERM.
	Terminate() error
	// Kill sends SIGKILL.
	Kill() error
	// Wait waits until the child has exited and returns its return code
	// (asyncio's transport._wait, which Process.wait is built on).
	Wait(co *Co) (int, error)
}

// ErrProcessLookup: a signal for a child that has already exited
// (asyncio: ProcessLookupError). Errors wrapping it match syscall.ESRCH
// too.
var ErrProcessLookup = errors.New("process has exited")

// Stdio says what one of a child's standard streams is connected to. The
// zero value is StdioPipe, asyncio's default.
type Stdio struct {
	mode stdioMode
	file *os.File
}

type stdioMode uint8

const (
	stdioPipe stdioMode = iota
	stdioDevNull
	stdioInherit
	stdioStdout
	stdioFile
)

var (
	// StdioPipe connects the stream to a pipe with a transport on the
	// loop (asyncio.subprocess.PIPE).
	StdioPipe = Stdio{mode: stdioPipe}
	// StdioDevNull connects it to /dev/null (asyncio.subprocess.DEVNULL).
	StdioDevNull = Stdio{mode: stdioDevNull}
	// StdioInherit gives the child this process's own stream (None).
	StdioInherit = Stdio{mode: stdioInherit}
	// StdioStdout, for Stderr only, sends the child's stderr wherever its
	// stdout goes (asyncio.subprocess.STDOUT).
	StdioStdout = Stdio{mode: stdioStdout}
)

// StdioFile connects the stream to f, an open file (or pipe, socket,
// terminal) that stays the caller's: the child gets a copy of it. As with
// os/exec, f is switched to blocking mode (its Fd is taken), because a
// child's reads and writes on a non-blocking stream fail with EAGAIN.
func StdioFile(f *os.File) Stdio { return Stdio{mode: stdioFile, file: f} }

// SubprocessOptions configure SubprocessExec and SubprocessShell; nil
// means every default.
type SubprocessOptions struct {
	// Stdin, Stdout and Stderr say where each standard stream goes; the
	// zero value is a pipe.
	Stdin, Stdout, Stderr Stdio
	// Dir is the child's working directory; "" keeps this process's.
	Dir string
	// Env is the child's environment ("KEY=value" entries); nil passes
	// this process's environment. PATH lookups of the program use the PATH
	// in Env when it has one (as Python's subprocess does).
	Env []string
	// Setpgid puts the child in process group Pgid, or, with Pgid 0, in a
	// new group it leads (asyncio's process_group).
	Setpgid bool
	Pgid    int
	// NewSession starts the child in a new session (setsid; asyncio's
	// start_new_session).
	NewSession bool
}

// SubprocessExec runs program with args (asyncio: loop.subprocess_exec):
// no shell is involved, each argument reaches the child as it is. A
// program without a slash is looked up in PATH. It returns once the
// protocol's ConnectionMade has run.
//
// Errors name the program and wrap the cause: a program that does not
// exist matches fs.ErrNotExist (ENOENT), one that cannot be executed (a
// directory, no permission) fs.ErrPermission (EACCES), a bad working
// directory its own errno, a NUL byte in an argument ErrInvalidArgument,
// a closed loop ErrClosed. Nothing is left running after an error.
func SubprocessExec[P SubprocessProtocol](co *Co, factory func() P, program string, args []string, opts *SubprocessOptions) (SubprocessTransport, P, error) {
	argv := append([]string{program}, args...)
	t, p, err := startSubprocess(co, factory, program, argv, opts)
	if err != nil {
		return nil, p, fmt.Errorf("subprocess exec %q: %w", program, err)
	}
	return t, p, nil
}

// SubprocessShell runs cmd with /bin/sh -c (asyncio:
// loop.subprocess_shell). The shell interprets cmd: quote every value
// that comes from outside the program with ShellQuote, or better, use
// SubprocessExec, which involves no shell. Errors name the command.
func SubprocessShell[P SubprocessProtocol](co *Co, factory func() P, cmd string, opts *SubprocessOptions) (SubprocessTransport, P, error) {
	t, p, err := startSubprocess(co, factory, "/bin/sh", []string{"/bin/sh", "-c", cmd}, opts)
	if err != nil {
		return nil, p, fmt.Errorf("subprocess shell %q: %w", cmd, err)
	}
	return t, p, nil
}

// ShellQuote returns s quoted for a POSIX shell, as one word that the
// shell passes on unchanged (Python's shlex.quote): s inside single
// quotes, each single quote in it written as '"'"'.
func ShellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./-_", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// lookPath finds program as execvp would: as it is when it has a slash,
// else in the PATH of env (or of this process).
func lookPath(program string, env []string) (string, error) {
	if strings.ContainsRune(program, '/') {
		return program, nil
	}
	path, found := "", false
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			path, found = v, true
			break
		}
	}
	if env == nil || !found {
		path = os.Getenv("PATH")
	}
	denied := false
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, program)
		st, err := os.Stat(p)
		if err != nil || st.IsDir() {
			continue
		}
		if unix.Access(p, unix.X_OK) != nil {
			denied = true
			continue
		}
		return p, nil
	}
	if denied {
		return "", fmt.Errorf("not executable in PATH: %w", fs.ErrPermission)
	}
	return "", fmt.Errorf("not found in PATH: %w", unix.ENOENT)
}

// checkArgs refuses what exec cannot carry: an empty program and NUL
// bytes (which would silently cut an argument short).
func checkArgs(argv []string, o *SubprocessOptions) error {
	if argv[0] == "" {
		return fmt.Errorf("empty program name: %w", ErrInvalidArgument)
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("argument %d contains a NUL byte: %w", i, ErrInvalidArgument)
		}
	}
	for _, e := range o.Env {
		if strings.IndexByte(e, 0) >= 0 || !strings.Contains(e, "=") {
			return fmt.Errorf("environment entry %q is not KEY=value without NUL: %w", e, ErrInvalidArgument)
		}
	}
	if strings.IndexByte(o.Dir, 0) >= 0 {
		return fmt.Errorf("working directory contains a NUL byte: %w", ErrInvalidArgument)
	}
	if o.Stdin.mode == stdioStdout || o.Stdout.mode == stdioStdout {
		return fmt.Errorf("StdioStdout is for Stderr only: %w", ErrInvalidArgument)
	}
	for _, s := range []Stdio{o.Stdin, o.Stdout, o.Stderr} {
		if s.mode == stdioFile && s.file == nil {
			return fmt.Errorf("StdioFile(nil): %w", ErrInvalidArgument)
		}
	}
	return nil
}

// startSubprocess spawns the child, makes its transport and protocol and
// waits for ConnectionMade.
func startSubprocess[P SubprocessProtocol](co *Co, factory func() P, program string, argv []string, opts *SubprocessOptions) (*subprocessTransport, P, error) {
	var zero P
	if co == nil || factory == nil {
		return nil, zero, fmt.Errorf("nil coroutine or factory: %w", ErrInvalidArgument)
	}
	l := co.loop
	if err := l.checkUsable(); err != nil {
		return nil, zero, err
	}
	var o SubprocessOptions
	if opts != nil {
		o = *opts
	}
	if err := checkArgs(argv, &o); err != nil {
		return nil, zero, err
	}
	path, err := lookPath(program, o.Env)
	if err != nil {
		return nil, zero, err
	}
	p, err := callGuarded(func() (P, error) { return factory(), nil })
	if err != nil {
		return nil, zero, fmt.Errorf("protocol factory: %w", err)
	}
	sp, err := spawn(path, argv, &o)
	if err != nil {
		return nil, zero, err
	}
	waiter := CreateFuture[struct{}](l)
	t := newSubprocessTransport(l, sp, p, waiter)
	if _, err := waiter.Await(co); err != nil {
		t.Close()
		return nil, zero, err
	}
	return t, p, nil
}

// pipeSize is the capacity asked for the pipes of a child's streams.
const pipeSize = 256 << 10

// spawned is a started child: its pid, its pidfd (-1 if the kernel gave
// none) and the parent's ends of its pipes (-1 where none).
type spawned struct {
	pid, pidfd int
	pipes      [3]int
}

// spawn starts the child: pipes made close-on-exec (the parent's ends
// non-blocking, the child's left blocking, as a program expects its
// standard streams), then fork and exec through syscall.ForkExec, which
// reports an exec failure synchronously and reaps the failed child, and
// asks clone for a pidfd (CLONE_PIDFD).
func spawn(path string, argv []string, o *SubprocessOptions) (sp spawned, err error) {
	sp = spawned{pid: -1, pidfd: -1, pipes: [3]int{-1, -1, -1}}
	var child [3]int     // the child's fds 0, 1, 2 as descriptors here
	var closeAfter []int // our copies of the child's ends
	devnull := -1
	defer func() {
		for _, fd := range closeAfter {
			unix.Close(fd)
		}
		if err != nil {
			for i, fd := range sp.pipes {
				if fd >= 0 {
					unix.Close(fd)
					sp.pipes[i] = -1
				}
			}
		}
	}()
	for i, s := range [3]Stdio{o.Stdin, o.Stdout, o.Stderr} {
		switch s.mode {
		case stdioPipe:
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				return sp, fmt.Errorf("pipe for fd %d: %w", i, err)
			}
			ours, theirs := p[0], p[1] // stdout, stderr: we read
			if i == 0 {
				ours, theirs = p[1], p[0] // stdin: we write
			}
			sp.pipes[i] = ours
			closeAfter = append(closeAfter, theirs)
			// A bigger pipe than Linux's 64 KiB default: bulk output then
			// takes a quarter of the wake-ups and system calls on both
			// sides. The memory is only committed as the pipe fills; a
			// failure (an unprivileged process over
			// /proc/sys/fs/pipe-max-size) keeps the default.
			unix.FcntlInt(uintptr(ours), unix.F_SETPIPE_SZ, pipeSize)
			if err := unix.SetNonblock(ours, true); err != nil {
				return sp, fmt.Errorf("pipe for fd %d: %w", i, err)
			}
			child[i] = theirs
		case stdioDevNull:
			if devnull < 0 {
				if devnull, err = unix.Open(os.DevNull, unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
					return sp, fmt.Errorf("open %s: %w", os.DevNull, err)
				}
				closeAfter = append(closeAfter, devnull)
			}
			child[i] = devnull
		case stdioInherit:
			child[i] = i
		case stdioStdout:
			child[i] = child[1]
		case stdioFile:
			// Fd, as os/exec does: it switches the file to blocking mode,
			// which is what a child expects of its standard streams (a
			// non-blocking one makes its reads fail with EAGAIN).
			fd := int(s.file.Fd())
			if fd < 0 {
				return sp, fmt.Errorf("file %s for fd %d: %w", s.file.Name(), i, os.ErrClosed)
			}
			child[i] = fd
		}
	}
	env := o.Env
	if env == nil {
		env = os.Environ()
	}
	pidfd := -1
	attr := &syscall.ProcAttr{
		Dir:   o.Dir,
		Env:   env,
		Files: []uintptr{uintptr(child[0]), uintptr(child[1]), uintptr(child[2])},
		Sys: &syscall.SysProcAttr{
			Setpgid: o.Setpgid, Pgid: o.Pgid, Setsid: o.NewSession,
			PidFD: &pidfd,
		},
	}
	pid, err := syscall.ForkExec(path, argv, attr)
	if err != nil {
		if o.Dir != "" {
			return sp, fmt.Errorf("fork/exec %s in directory %s: %w", path, o.Dir, err)
		}
		return sp, fmt.Errorf("fork/exec %s: %w", path, err)
	}
	sp.pid = pid
	if pidfd < 0 {
		// CLONE_PIDFD unavailable: pidfd_open is (Linux 5.3) or the reaper
		// falls back to waiting in a goroutine.
		if fd, err := unix.PidfdOpen(pid, 0); err == nil {
			unix.CloseOnExec(fd)
			pidfd = fd
		}
	}
	sp.pidfd = pidfd
	return sp, nil
}
