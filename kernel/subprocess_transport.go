package kernel

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// subprocessTransport is the SubprocessTransport (asyncio's
// base_subprocess.BaseSubprocessTransport): the child's pipes, each a pipe
// transport whose protocol forwards to the SubprocessProtocol with the
// pipe's fd, and the child's exit, reported by the reaper
// (kernel/subprocess_reap.go). ConnectionLost runs once both are over.
type subprocessTransport struct {
	loop  *Loop
	proto SubprocessProtocol
	pid   int
	pidfd int // -1 once closed (after the reap), or if the kernel gave none

	pipes      [3]*streamTransport // nil where the stream is not a pipe
	pipeProtos [3]subprocessPipe
	pipeDone   [3]bool // PipeConnectionLost was called, or there is no pipe

	made       bool // ConnectionMade has run
	exited     bool // reaped: returncode is valid
	returncode int
	closed     bool // Close was called
	finished   bool // ConnectionLost is scheduled or done
	waiters    []*Future[int]

	watch *ioRef // the pidfd open in the driver and watched, when it is
	// goWait: the exit is waited for on a goroutine (no pidfd, or a driver
	// without the watch capability).
	goWait bool
}

// newSubprocessTransport wraps a spawned child: its pipes become pipe
// transports, its exit is watched, and the protocol's ConnectionMade runs
// in the next loop iteration, after which waiter gets its result.
func newSubprocessTransport(l *Loop, sp spawned, p SubprocessProtocol, waiter *Future[struct{}]) *subprocessTransport {
	t := &subprocessTransport{loop: l, proto: p, pid: sp.pid, pidfd: sp.pidfd}
	for i, fd := range sp.pipes {
		if fd < 0 {
			t.pipeDone[i] = true
			continue
		}
		kind := readPipe
		if i == 0 {
			kind = writePipe
		}
		t.pipeProtos[i] = subprocessPipe{t: t, fd: i}
		pt, err := newPipeTransport(l, fd, nil, kind, &t.pipeProtos[i], nil)
		if err != nil {
			// Only a loop closed meanwhile gets here; the child then has no
			// such stream and the reaper still reaps it.
			unix.Close(fd)
			t.pipeDone[i] = true
			continue
		}
		t.pipes[i] = pt
	}
	l.procs.add(t)
	t.watchExit()
	if _, err := l.CallSoon(func() { t.start(waiter) }); err != nil {
		waiter.SetException(err)
	}
	return t
}

func (t *subprocessTransport) start(waiter *Future[struct{}]) {
	ok := t.call("ConnectionMade", func() { t.proto.ConnectionMade(t) })
	t.made = true
	if !ok {
		t.Close()
		if !waiter.Done() {
			waiter.SetException(fmt.Errorf("subprocess protocol ConnectionMade failed: %w", ErrTransportClosed))
		}
		return
	}
	if !waiter.Done() {
		waiter.SetResult(struct{}{})
	}
}

// call runs a protocol method; a panic goes to the exception handler and
// the child carries on (as asyncio, where an exception in a call_soon'd
// protocol method is only reported).
func (t *subprocessTransport) call(name string, fn func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			t.loop.CallExceptionHandler(ErrorContext{
				Message:   "Exception in subprocess protocol " + name,
				Err:       newPanicError(r),
				Transport: t,
				Protocol:  t.proto,
			})
			ok = false
		}
	}()
	fn()
	return true
}

// processExited is the reaper's report: the child is gone, its return code
// known.
func (t *subprocessTransport) processExited(rc int) {
	if t.exited {
		return
	}
	t.exited, t.returncode = true, rc
	if t.loop.debug {
		t.loop.logger.Debug("subprocess exited", "pid", t.pid, "returncode", rc)
	}
	t.call("ProcessExited", t.proto.ProcessExited)
	for _, w := range t.waiters {
		if !w.Done() {
			w.SetResult(rc)
		}
	}
	t.waiters = nil
	t.tryFinish()
}

// pipeLost is a pipe transport's ConnectionLost.
func (t *subprocessTransport) pipeLost(fd int, err error) {
	if t.pipeDone[fd] {
		return
	}
	t.pipeDone[fd] = true
	t.call("PipeConnectionLost", func() { t.proto.PipeConnectionLost(fd, err) })
	t.tryFinish()
}

// tryFinish schedules ConnectionLost once the child is reaped and every
// pipe closed.
func (t *subprocessTransport) tryFinish() {
	if t.finished || !t.exited || t.pipeDone != [3]bool{true, true, true} {
		return
	}
	t.finished = true
	if _, err := t.loop.CallSoon(t.callConnectionLost); err != nil {
		t.loop.procs.remove(t)
	}
}

func (t *subprocessTransport) callConnectionLost() {
	t.loop.procs.remove(t)
	t.call("ConnectionLost", func() { t.proto.ConnectionLost(nil) })
}

// Close closes the pipes (stdin after what is buffered is written) and
// kills the child if it is still running (SIGKILL, as asyncio's close);
// ConnectionLost follows once it is reaped.
func (t *subprocessTransport) Close() error {
	if t.closed {
		return nil
	}
	t.closed = true
	for i, p := range t.pipes {
		if p != nil && !t.pipeDone[i] {
			p.Close()
		}
	}
	if !t.exited {
		if err := t.signal(unix.SIGKILL); err != nil && t.loop.debug {
			t.loop.logger.Debug("killing a subprocess on close", "pid", t.pid, "error", err)
		}
	}
	return nil
}

// IsClosing reports whether Close was called.
func (t *subprocessTransport) IsClosing() bool { return t.closed }

// GetExtraInfo answers "pid" (an int).
func (t *subprocessTransport) GetExtraInfo(name string) (any, bool) {
	if name == "pid" {
		return t.pid, true
	}
	return nil, false
}

// SetProtocol switches to p, which must be a SubprocessProtocol (others
// are ignored: nothing else can receive a child's events).
func (t *subprocessTransport) SetProtocol(p BaseProtocol) {
	if sp, ok := p.(SubprocessProtocol); ok {
		t.proto = sp
	}
}

func (t *subprocessTransport) GetProtocol() BaseProtocol { return t.proto }

func (t *subprocessTransport) GetPid() int { return t.pid }

func (t *subprocessTransport) GetReturncode() (int, bool) { return t.returncode, t.exited }

func (t *subprocessTransport) GetPipeTransport(fd int) BaseTransport {
	if fd < 0 || fd > 2 || t.pipes[fd] == nil {
		return nil
	}
	return t.pipes[fd]
}

func (t *subprocessTransport) SendSignal(sig syscall.Signal) error {
	if sig < 0 || sig >= maxSignal {
		return fmt.Errorf("send signal %d to pid %d: %w", int(sig), t.pid, ErrInvalidSignal)
	}
	return t.signal(sig)
}

func (t *subprocessTransport) Terminate() error { return t.signal(unix.SIGTERM) }

func (t *subprocessTransport) Kill() error { return t.signal(unix.SIGKILL) }

// signal signals the child through its pidfd, which cannot reach another
// process that reused the pid; once the child is reaped there is nothing
// to signal.
func (t *subprocessTransport) signal(sig syscall.Signal) error {
	var err error
	switch {
	case t.exited:
		err = unix.ESRCH
	case t.pidfd >= 0:
		err = unix.PidfdSendSignal(t.pidfd, sig, nil, 0)
	default:
		// No pidfd: the pid is still the child's until the loop reaps it,
		// which only the loop does, and the loop is here.
		err = unix.Kill(t.pid, sig)
	}
	switch err {
	case nil:
		return nil
	case unix.ESRCH:
		return fmt.Errorf("send signal %v to pid %d: %w: %w", sig, t.pid, ErrProcessLookup, unix.ESRCH)
	}
	return fmt.Errorf("send signal %v to pid %d: %w", sig, t.pid, err)
}

// Wait waits for the child's exit and returns its return code.
func (t *subprocessTransport) Wait(co *Co) (int, error) {
	if t.exited {
		return t.returncode, nil
	}
	f := CreateFuture[int](t.loop)
	t.waiters = append(t.waiters, f)
	return f.Await(co)
}

func (t *subprocessTransport) String() string {
	state := "running"
	switch {
	case t.exited:
		state = fmt.Sprintf("returncode=%d", t.returncode)
	case t.closed:
		state = "closing"
	}
	return fmt.Sprintf("<SubprocessTransport pid=%d %s>", t.pid, state)
}

// subprocessPipe is the protocol of one of the child's pipes: it tags what
// the pipe reports with the pipe's fd for the SubprocessProtocol, and
// passes stdin's flow control on to it if it wants it (asyncio's
// ReadSubprocessPipeProto and WriteSubprocessPipeProto).
type subprocessPipe struct {
	t  *subprocessTransport
	fd int
}

func (p *subprocessPipe) ConnectionMade(BaseTransport) {}

func (p *subprocessPipe) ConnectionLost(err error) { p.t.pipeLost(p.fd, err) }

func (p *subprocessPipe) DataReceived(b []byte) { p.t.proto.PipeDataReceived(p.fd, b) }

// EOFReceived lets the pipe close at the end of the stream.
func (p *subprocessPipe) EOFReceived() bool { return false }

func (p *subprocessPipe) PauseWriting() {
	if fc, ok := p.t.proto.(WriteFlowControl); ok {
		fc.PauseWriting()
	}
}

func (p *subprocessPipe) ResumeWriting() {
	if fc, ok := p.t.proto.(WriteFlowControl); ok {
		fc.ResumeWriting()
	}
}

var (
	_ SubprocessTransport = (*subprocessTransport)(nil)
	_ Protocol            = (*subprocessPipe)(nil)
	_ WriteFlowControl    = (*subprocessPipe)(nil)
)
