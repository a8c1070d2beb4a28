package kernel_test

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/loopkernel/loopkernel/kernel"
)

// dateProtocol is the spec's subprocess protocol example: it collects the
// child's stdout and completes a future when the transport is done.
type dateProtocol struct {
	out  []byte
	done *kernel.Future[struct{}]
}

func (p *dateProtocol) ConnectionMade(kernel.BaseTransport)  {}
func (p *dateProtocol) PipeDataReceived(fd int, data []byte) { p.out = append(p.out, data...) }
func (p *dateProtocol) PipeConnectionLost(int, error)        {}
func (p *dateProtocol) ProcessExited()                       {}
func (p *dateProtocol) ConnectionLost(error)                 { p.done.SetResult(struct{}{}) }

// The spec's example of loop.subprocess_exec with a SubprocessProtocol: run
// a program, collect its output, and read its return code once the
// transport is finished (ConnectionLost comes after the exit and after
// every pipe is closed).
func ExampleSubprocessExec() {
	loop := newEpollLoop()
	defer loop.Close()

	main, _ := kernel.CreateTask(loop, func(co *kernel.Co) (struct{}, error) {
		p := &dateProtocol{done: kernel.CreateFuture[struct{}](loop)}
		tr, _, err := kernel.SubprocessExec(co, func() *dateProtocol { return p },
			"echo", []string{"no shell: $HOME stays as it is"}, &kernel.SubprocessOptions{Stdin: kernel.StdioDevNull})
		if err != nil {
			return struct{}{}, err
		}
		if _, err := p.done.Await(co); err != nil {
			return struct{}{}, err
		}
		rc, _ := tr.GetReturncode()
		fmt.Printf("%s", p.out)
		fmt.Println("return code:", rc)
		return struct{}{}, nil
	})
	if err := loop.RunUntilComplete(main); err != nil {
		fmt.Println(err)
	}
	// Output:
	// no shell: $HOME stays as it is
	// return code: 0
}

// A shell command, with a value from outside quoted by ShellQuote so that
// the shell sees it as one literal word; a signal after the exit is
// refused rather than sent to whoever has the pid now.
func ExampleSubprocessShell() {
	loop := newEpollLoop()
	defer loop.Close()

	main, _ := kernel.CreateTask(loop, func(co *kernel.Co) (struct{}, error) {
		name := "it's; rm -rf $HOME"
		p := &dateProtocol{done: kernel.CreateFuture[struct{}](loop)}
		tr, _, err := kernel.SubprocessShell(co, func() *dateProtocol { return p },
			"printf '%s\\n' "+kernel.ShellQuote(name)+"; exit 3", nil)
		if err != nil {
			return struct{}{}, err
		}
		rc, err := tr.Wait(co)
		if err != nil {
			return struct{}{}, err
		}
		p.done.Await(co)
		fmt.Printf("%sreturn code: %d\n", p.out, rc)
		err = tr.SendSignal(syscall.SIGTERM)
		fmt.Println("signal after exit refused:", err != nil)
		return struct{}{}, nil
	})
	if err := loop.RunUntilComplete(main); err != nil {
		fmt.Println(err)
	}
	// Output:
	// it's; rm -rf $HOME
	// return code: 3
	// signal after exit refused: true
}

// lineProtocol prints what a read pipe delivers.
type lineProtocol struct{ done *kernel.Future[struct{}] }

func (p *lineProtocol) ConnectionMade(kernel.BaseTransport) {}
func (p *lineProtocol) DataReceived(b []byte)               { fmt.Printf("read %q\n", b) }
func (p *lineProtocol) EOFReceived() bool                   { fmt.Println("EOF"); return false }
func (p *lineProtocol) ConnectionLost(err error)            { p.done.SetResult(struct{}{}) }

// writeProtocol is a write pipe's protocol: only the end matters here.
type writeProtocol struct{}

func (writeProtocol) ConnectionMade(kernel.BaseTransport) {}
func (writeProtocol) ConnectionLost(error)                {}

// Both ends of an os.Pipe on the loop (asyncio's connect_read_pipe and
// connect_write_pipe): WriteEOF is the pipe's close, which the reader sees
// as EOF, followed by ConnectionLost.
func ExampleConnectReadPipe() {
	loop := newEpollLoop()
	defer loop.Close()

	main, _ := kernel.CreateTask(loop, func(co *kernel.Co) (struct{}, error) {
		r, w, err := os.Pipe()
		if err != nil {
			return struct{}{}, err
		}
		rp := &lineProtocol{done: kernel.CreateFuture[struct{}](loop)}
		if _, _, err := kernel.ConnectReadPipe(co, func() *lineProtocol { return rp }, r); err != nil {
			return struct{}{}, err
		}
		wt, _, err := kernel.ConnectWritePipe(co, func() writeProtocol { return writeProtocol{} }, w)
		if err != nil {
			return struct{}{}, err
		}
		wt.Write([]byte("through the pipe"))
		wt.WriteEOF()
		_, err = rp.done.Await(co)
		return struct{}{}, err
	})
	if err := loop.RunUntilComplete(main); err != nil {
		fmt.Println(err)
	}
	// Output:
	// read "through the pipe"
	// EOF
}

// ShellQuote makes any string one literal word for /bin/sh.
func ExampleShellQuote() {
	fmt.Println(kernel.ShellQuote("plain-word"))
	fmt.Println(kernel.ShellQuote("two words"))
	fmt.Println(kernel.ShellQuote("it's $HOME"))
	// Output:
	// plain-word
	// 'two words'
	// 'it'"'"'s $HOME'
}

// flowProtocol reports a write pipe's flow control and its end.
type flowProtocol struct{ done *kernel.Future[error] }

func (p *flowProtocol) ConnectionMade(kernel.BaseTransport) {}
func (p *flowProtocol) PauseWriting()                       { fmt.Println("paused: the pipe is full") }
func (p *flowProtocol) ResumeWriting()                      {}
func (p *flowProtocol) ConnectionLost(err error)            { p.done.SetResult(err) }

// A write pipe whose reader goes away while data is still buffered: the
// transport notices (it watches the pipe) and ends with EPIPE; the process
// gets no SIGPIPE.
func ExampleConnectWritePipe() {
	loop := newEpollLoop()
	defer loop.Close()

	main, _ := kernel.CreateTask(loop, func(co *kernel.Co) (struct{}, error) {
		r, w, err := os.Pipe()
		if err != nil {
			return struct{}{}, err
		}
		p := &flowProtocol{done: kernel.CreateFuture[error](loop)}
		wt, _, err := kernel.ConnectWritePipe(co, func() *flowProtocol { return p }, w)
		if err != nil {
			return struct{}{}, err
		}
		wt.Write(make([]byte, 1<<20)) // more than the pipe holds
		r.Close()                     // the reader goes away
		err, _ = p.done.Await(co)
		fmt.Println("lost with EPIPE:", errors.Is(err, syscall.EPIPE))
		return struct{}{}, nil
	})
	if err := loop.RunUntilComplete(main); err != nil {
		fmt.Println(err)
	}
	// Output:
	// paused: the pipe is full
	// lost with EPIPE: true
}
