package streams_test

import (
	"bytes"
	"fmt"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/streams"
)

// asyncio.subprocess from a task: Communicate writes the input and reads
// stdout and stderr at once, so a child with a lot to say on both cannot
// deadlock against its parent.
func ExampleCreateSubprocessExec() {
	sel, err := selector.NewEpoll()
	if err != nil {
		panic(err)
	}
	loop := kernel.New(sel)
	defer loop.Close()

	main, _ := kernel.CreateTask(loop, func(co *kernel.Co) (struct{}, error) {
		p, err := streams.CreateSubprocessExec(co, "tr", []string{"a-z", "A-Z"}, nil)
		if err != nil {
			return struct{}{}, err
		}
		input := bytes.Repeat([]byte("loopkernel "), 100_000) // 1.1 MB
		out, errOut, err := p.Communicate(co, input)
		if err != nil {
			return struct{}{}, err
		}
		rc, _ := p.Returncode()
		fmt.Printf("%d bytes back, starting %q; %d on stderr; return code %d\n", len(out), out[:11], len(errOut), rc)
		return struct{}{}, nil
	})
	if err := loop.RunUntilComplete(main); err != nil {
		fmt.Println(err)
	}
	// Output:
	// 1100000 bytes back, starting "LOOPKERNEL "; 0 on stderr; return code 0
}

// A dialogue: a line to the child's stdin, its answer from stdout, then
// its exit status from Wait.
func ExampleProcess_Wait() {
	sel, err := selector.NewEpoll()
	if err != nil {
		panic(err)
	}
	loop := kernel.New(sel)
	defer loop.Close()

	main, _ := kernel.CreateTask(loop, func(co *kernel.Co) (struct{}, error) {
		p, err := streams.CreateSubprocessShell(co, `read name; echo "hello, $name"; exit 7`, nil)
		if err != nil {
			return struct{}{}, err
		}
		p.Stdin.Write([]byte("gopher\n"))
		line, err := p.Stdout.Readline(co)
		if err != nil {
			return struct{}{}, err
		}
		rc, err := p.Wait(co)
		fmt.Printf("%s", line)
		fmt.Println("exit status:", rc, err)
		return struct{}{}, nil
	})
	if err := loop.RunUntilComplete(main); err != nil {
		fmt.Println(err)
	}
	// Output:
	// hello, gopher
	// exit status: 7 <nil>
}

// Terminate a child that would run for long; its return code is minus
// the signal.
func ExampleProcess_Terminate() {
	sel, err := selector.NewEpoll()
	if err != nil {
		panic(err)
	}
	loop := kernel.New(sel)
	defer loop.Close()

	main, _ := kernel.CreateTask(loop, func(co *kernel.Co) (struct{}, error) {
		p, err := streams.CreateSubprocessExec(co, "sleep", []string{"60"},
			&streams.ProcessOptions{SubprocessOptions: kernel.SubprocessOptions{Stdin: kernel.StdioDevNull}})
		if err != nil {
			return struct{}{}, err
		}
		p.Terminate()
		rc, err := p.Wait(co)
		fmt.Println("return code:", rc, err)
		return struct{}{}, nil
	})
	if err := loop.RunUntilComplete(main); err != nil {
		fmt.Println(err)
	}
	// Output:
	// return code: -15 <nil>
}
