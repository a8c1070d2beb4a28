package streams

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/loopkernel/loopkernel/kernel"
)

// Subprocesses as streams (asyncio.subprocess): a Process hands a
// coroutine its child's stdin as a Writer and its stdout and stderr as
// Readers, over kernel.SubprocessExec's transport and protocol.

// ProcessOptions configure CreateSubprocessExec and CreateSubprocessShell:
// the Readers' limit and, embedded, everything kernel.SubprocessExec takes.
// Each standard stream is a pipe unless set otherwise (asyncio's
// create_subprocess_exec defaults to inherited streams; a Go zero value
// cannot tell "unset" from "pipe", so pass kernel.StdioInherit for that).
type ProcessOptions struct {
	// Limit is the Stdout and Stderr Readers' limit; 0 means DefaultLimit.
	Limit int
	kernel.SubprocessOptions
}

// Process is a child process (asyncio.subprocess.Process). Stdin, Stdout
// and Stderr are nil for a stream that is not a pipe. Use it from tasks on
// the loop that started it.
//
// As in asyncio, a child that fills a pipe nobody reads blocks: read
// Stdout and Stderr, or use Communicate, which reads both while it writes
// the input, rather than Wait alone.
type Process struct {
	Stdin  *Writer
	Stdout *Reader
	Stderr *Reader

	transport kernel.SubprocessTransport
	proto     *processProtocol
}

// CreateSubprocessExec runs program with args, no shell involved
// (asyncio.create_subprocess_exec).
func CreateSubprocessExec(co *kernel.Co, program string, args []string, opts *ProcessOptions) (*Process, error) {
	o, pp := newProcessProtocol(co, opts)
	t, _, err := kernel.SubprocessExec(co, func() *processProtocol { return pp }, program, args, &o.SubprocessOptions)
	if err != nil {
		return nil, fmt.Errorf("create subprocess: %w", err)
	}
	return pp.process(t), nil
}

// CreateSubprocessShell runs cmd with /bin/sh -c
// (asyncio.create_subprocess_shell); quote values with kernel.ShellQuote.
func CreateSubprocessShell(co *kernel.Co, cmd string, opts *ProcessOptions) (*Process, error) {
	o, pp := newProcessProtocol(co, opts)
	t, _, err := kernel.SubprocessShell(co, func() *processProtocol { return pp }, cmd, &o.SubprocessOptions)
	if err != nil {
		return nil, fmt.Errorf("create subprocess: %w", err)
	}
	return pp.process(t), nil
}

func newProcessProtocol(co *kernel.Co, opts *ProcessOptions) (ProcessOptions, *processProtocol) {
	var o ProcessOptions
	if opts != nil {
		o = *opts
	}
	return o, &processProtocol{loop: co.Loop(), limit: o.Limit}
}

// Pid returns the child's process id.
func (p *Process) Pid() int { return p.transport.GetPid() }

// Returncode returns the child's return code and true once it has exited
// (minus the signal if a signal killed it).
func (p *Process) Returncode() (int, bool) { return p.transport.GetReturncode() }

// Transport returns the subprocess transport underneath.
func (p *Process) Transport() kernel.SubprocessTransport { return p.transport }

// Wait waits for the child to exit and returns its return code.
func (p *Process) Wait(co *kernel.Co) (int, error) { return p.transport.Wait(co) }

// SendSignal sends sig to the child; once it has exited the error matches
// kernel.ErrProcessLookup.
func (p *Process) SendSignal(sig syscall.Signal) error { return p.transport.SendSignal(sig) }

// Terminate sends SIGTERM.
func (p *Process) Terminate() error { return p.transport.Terminate() }

// Kill sends SIGKILL.
func (p *Process) Kill() error { return p.transport.Kill() }

// Communicate writes input to the child's stdin and closes it, reads its
// stdout and stderr to the end, all at once (so a child that writes a lot
// on both while it reads cannot deadlock), then waits for the exit
// (asyncio: Process.communicate). A stream that is not a pipe reads as
// nil. A child that stops reading early is not an error (its EPIPE is
// ignored, as asyncio ignores BrokenPipeError here).
func (p *Process) Communicate(co *kernel.Co, input []byte) (stdout, stderr []byte, err error) {
	l := co.Loop()
	var tasks []*kernel.Task[[]byte]
	start := func(fn func(co *kernel.Co) ([]byte, error)) error {
		t, err := kernel.CreateTask(l, fn)
		if err != nil {
			return err
		}
		tasks = append(tasks, t)
		return nil
	}
	outIdx, errIdx := -1, -1
	if p.Stdin != nil {
		if err := start(func(co *kernel.Co) ([]byte, error) { return nil, p.feedStdin(co, input) }); err != nil {
			return nil, nil, fmt.Errorf("communicate: %w", err)
		}
	}
	if p.Stdout != nil {
		outIdx = len(tasks)
		if err := start(func(co *kernel.Co) ([]byte, error) { return p.readStream(co, 1, p.Stdout) }); err != nil {
			return nil, nil, fmt.Errorf("communicate: %w", err)
		}
	}
	if p.Stderr != nil {
		errIdx = len(tasks)
		if err := start(func(co *kernel.Co) ([]byte, error) { return p.readStream(co, 2, p.Stderr) }); err != nil {
			return nil, nil, fmt.Errorf("communicate: %w", err)
		}
	}
	var firstErr error
	results := make([][]byte, len(tasks))
	for i, t := range tasks {
		v, err := t.Await(co)
		if err != nil && firstErr == nil {
			firstErr = err
			for _, other := range tasks[i+1:] {
				other.Cancel()
			}
		}
		results[i] = v
	}
	if firstErr != nil {
		return nil, nil, fmt.Errorf("communicate: %w", firstErr)
	}
	if outIdx >= 0 {
		stdout = results[outIdx]
	}
	if errIdx >= 0 {
		stderr = results[errIdx]
	}
	if _, err := p.Wait(co); err != nil {
		return stdout, stderr, fmt.Errorf("communicate: %w", err)
	}
	return stdout, stderr, nil
}

// feedStdin writes input, waits for it to drain, and closes stdin.
func (p *Process) feedStdin(co *kernel.Co, input []byte) error {
	if len(input) > 0 {
		if err := p.Stdin.Write(input); err != nil && !brokenPipe(err) {
			return err
		}
		if err := p.Stdin.Drain(co); err != nil && !brokenPipe(err) {
			return err
		}
	}
	p.Stdin.Close()
	return nil
}

// brokenPipe: the child closed its stdin before reading everything.
func brokenPipe(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, kernel.ErrTransportClosed)
}

// readStream reads r to its end and closes the pipe.
func (p *Process) readStream(co *kernel.Co, fd int, r *Reader) ([]byte, error) {
	b, err := r.Read(co, -1)
	if t := p.transport.GetPipeTransport(fd); t != nil {
		t.Close()
	}
	return b, err
}

// processProtocol is the SubprocessProtocol behind a Process
// (asyncio.subprocess.SubprocessStreamProtocol): pipe data into the
// Readers, the pipes' ends into their EOF or error, stdin's flow control
// into Writer.Drain.
type processProtocol struct {
	loop      *kernel.Loop
	limit     int
	transport kernel.SubprocessTransport
	stdin     *protocol // stdin's flow control and close, for the Writer
	writer    *Writer
	readers   [3]*Reader
}

func (pp *processProtocol) process(t kernel.SubprocessTransport) *Process {
	return &Process{Stdin: pp.writer, Stdout: pp.readers[1], Stderr: pp.readers[2], transport: t, proto: pp}
}

func (pp *processProtocol) ConnectionMade(t kernel.BaseTransport) {
	st, ok := t.(kernel.SubprocessTransport)
	if !ok {
		panic(fmt.Sprintf("streams: a subprocess protocol got a %T, not a kernel.SubprocessTransport", t))
	}
	pp.transport = st
	for fd := 1; fd <= 2; fd++ {
		if rt, ok := st.GetPipeTransport(fd).(kernel.ReadTransport); ok {
			r := NewReader(pp.limit)
			r.SetTransport(rt)
			pp.readers[fd] = r
		}
	}
	if wt, ok := st.GetPipeTransport(0).(kernel.Transport); ok {
		// The stdin Writer's protocol: its Reader is never fed or exposed
		// (a write pipe receives nothing); it carries Drain's state.
		pp.stdin = newProtocol(pp.loop, NewReader(0), nil)
		pp.stdin.transport = wt
		pp.writer = &Writer{t: wt, proto: pp.stdin}
	}
}

func (pp *processProtocol) PipeDataReceived(fd int, data []byte) {
	if r := pp.readers[fd]; r != nil {
		r.FeedData(data)
	}
}

func (pp *processProtocol) PipeConnectionLost(fd int, err error) {
	if fd == 0 {
		if pp.stdin != nil {
			pp.stdin.ConnectionLost(err)
		}
		return
	}
	r := pp.readers[fd]
	if r == nil {
		return
	}
	if err == nil {
		r.FeedEOF()
	} else {
		r.SetException(err)
	}
}

func (pp *processProtocol) ProcessExited() {}

// ConnectionLost: the child has exited and every pipe is closed; what the
// Readers hold stays readable.
func (pp *processProtocol) ConnectionLost(error) {}

// PauseWriting and ResumeWriting are stdin's flow control.
func (pp *processProtocol) PauseWriting() {
	if pp.stdin != nil {
		pp.stdin.PauseWriting()
	}
}

func (pp *processProtocol) ResumeWriting() {
	if pp.stdin != nil {
		pp.stdin.ResumeWriting()
	}
}

var (
	_ kernel.SubprocessProtocol = (*processProtocol)(nil)
	_ kernel.WriteFlowControl   = (*processProtocol)(nil)
)
