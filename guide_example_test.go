package loopkernel_test

// The runnable examples of docs/guide.md, one per section, in its order.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/loopkernel/loopkernel"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/policy"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
	"github.com/loopkernel/loopkernel/streams"
)

// echo is the guide's echo server handler: one coroutine per connection,
// writing back each line until the client closes.
func echo(co *kernel.Co, r *streams.Reader, w *streams.Writer) error {
	defer w.Close()
	for {
		line, err := r.Readline(co)
		if err != nil || len(line) == 0 { // an error, or EOF
			return err
		}
		w.Write(line)
		if err := w.Drain(co); err != nil { // wait while the peer is slow
			return err
		}
	}
}

// An echo server with streams.StartServer, and a client of it on the same
// loop.
func Example_echoServer() {
	_, err := loopkernel.Run(context.Background(), func(co *kernel.Co) (struct{}, error) {
		srv, err := streams.StartServer(co, echo, "127.0.0.1", "0", nil)
		if err != nil {
			return struct{}{}, err
		}
		defer srv.Close()
		port := strconv.Itoa(srv.Sockets()[0].LocalAddr().(*net.TCPAddr).Port)

		r, w, err := streams.OpenConnection(co, "127.0.0.1", port, nil)
		if err != nil {
			return struct{}{}, err
		}
		defer w.Close()
		for _, msg := range []string{"hello", "loop"} {
			w.Write([]byte(msg + "\n"))
			line, err := r.Readline(co)
			if err != nil {
				return struct{}{}, err
			}
			fmt.Printf("echoed %q\n", line)
		}
		return struct{}{}, nil
	})
	fmt.Println("error:", err)
	// Output:
	// echoed "hello\n"
	// echoed "loop\n"
	// error: <nil>
}

// A client on the loop talks to any server: here one written with Go's
// net package, answering on its own goroutine. Its stream is read with
// bufio through the io.Reader adapter.
func Example_client() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() { // a plain Go server: one greeting per connection
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "220 greetings\r\n")
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	greeting, err := loopkernel.Run(context.Background(), func(co *kernel.Co) (string, error) {
		r, w, err := streams.OpenConnection(co, "127.0.0.1", port, nil)
		if err != nil {
			return "", err
		}
		defer w.Close()
		sc := bufio.NewScanner(r.IOReader(co))
		if !sc.Scan() {
			return "", fmt.Errorf("no greeting: %w", sc.Err())
		}
		return sc.Text(), nil
	}, loopkernel.WithSignals())
	fmt.Println(greeting, err)
	// Output: 220 greetings <nil>
}

// A blocking call (hashing, a database driver, a file system walk) runs on
// the executor while the loop goes on; its context ends when the caller
// gives up, here because the call takes longer than its budget.
func Example_executor() {
	_, err := loopkernel.Run(context.Background(), func(co *kernel.Co) (struct{}, error) {
		l := co.Loop()
		sum, err := kernel.RunInExecutor(l, nil, func(ctx context.Context) ([32]byte, error) {
			return sha256.Sum256([]byte(strings.Repeat("loop", 1<<16))), nil
		})
		if err != nil {
			return struct{}{}, err
		}
		digest, err := sum.Await(co)
		if err != nil {
			return struct{}{}, err
		}
		fmt.Printf("sha256: %x...\n", digest[:4])

		slow, err := kernel.RunInExecutor(l, nil, func(ctx context.Context) (string, error) {
			select {
			case <-time.After(time.Hour): // stands in for a slow call that honours ctx
				return "done", nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		})
		if err != nil {
			return struct{}{}, err
		}
		l.CallLater(10*time.Millisecond, func() { slow.Cancel() }) // the budget
		_, err = slow.Await(co)
		fmt.Println("slow call cancelled:", errors.Is(err, kernel.ErrCancelled))
		return struct{}{}, nil
	})
	fmt.Println("error:", err)
	// Output:
	// sha256: 086ca38f...
	// slow call cancelled: true
	// error: <nil>
}

// The same program on a selector in a supervised plugin process: a policy
// name (or LOOPKERNEL_POLICY=epoll-plugin, or --selector plugin:epoll with
// WithFlags) is all it takes. The plugin is this binary, re-executed; the
// loopkernel package serves it when imported.
func Example_pluginPolicy() {
	p, err := policy.Lookup("epoll-plugin")
	if err != nil {
		panic(err)
	}
	_, err = loopkernel.Run(context.Background(), func(co *kernel.Co) (struct{}, error) {
		caps := co.Loop().Driver().Capabilities()
		sel := co.Loop().Driver().(interface{ Selector() sdk.Selector }).Selector()
		_, remote := sel.(*plugin.RemoteSelector)
		fmt.Printf("%s %s, out of process: %v\n", caps.Family, caps.Backend, remote)
		return struct{}{}, co.Sleep(time.Millisecond) // waits in the plugin
	}, loopkernel.WithPolicy(p))
	fmt.Println("error:", err)
	// Output:
	// selector epoll, out of process: true
	// error: <nil>
}

// Several tasks under one budget with what the loop has without the task
// toolkit: each fetch is a task, a timer cancels those still running when
// the budget is spent, and awaiting each one collects its outcome.
func Example_tasksWithTimeout() {
	_, err := loopkernel.Run(context.Background(), func(co *kernel.Co) (struct{}, error) {
		l := co.Loop()
		fetch := func(d time.Duration) func(co *kernel.Co) (time.Duration, error) {
			return func(co *kernel.Co) (time.Duration, error) { return d, co.Sleep(d) }
		}
		var tasks []*kernel.Task[time.Duration]
		for _, d := range []time.Duration{time.Millisecond, 10 * time.Millisecond, time.Hour} {
			t, err := kernel.CreateTask(l, fetch(d))
			if err != nil {
				return struct{}{}, err
			}
			tasks = append(tasks, t)
		}
		budget, err := l.CallLater(200*time.Millisecond, func() {
			for _, t := range tasks {
				t.Cancel() // does nothing to a task that is done
			}
		})
		if err != nil {
			return struct{}{}, err
		}
		defer budget.Cancel()
		for _, t := range tasks {
			d, err := t.Await(co)
			fmt.Println(d, "cancelled:", errors.Is(err, kernel.ErrCancelled))
		}
		return struct{}{}, nil
	})
	fmt.Println("error:", err)
	// Output:
	// 1ms cancelled: false
	// 10ms cancelled: false
	// 0s cancelled: true
	// error: <nil>
}

// A task group under a timeout scope: three fetches, the slowest cut off
// by the budget, the group cancelling what is left and the scope turning
// that into ErrTimeout.
func Example_taskGroupWithTimeout() {
	_, err := loopkernel.Run(context.Background(), func(co *kernel.Co) (struct{}, error) {
		var done []time.Duration
		err := kernel.Timeout(co, 200*time.Millisecond, func(*kernel.TimeoutScope) error {
			return kernel.RunTaskGroup(co, func(tg *kernel.TaskGroup) error {
				for _, d := range []time.Duration{time.Millisecond, 10 * time.Millisecond, time.Hour} {
					if err := tg.Go(func(co *kernel.Co) error {
						if err := co.Sleep(d); err != nil {
							return err
						}
						done = append(done, d)
						return nil
					}); err != nil {
						return err
					}
				}
				return nil
			})
		})
		fmt.Println("finished:", done)
		fmt.Println("timed out:", errors.Is(err, kernel.ErrTimeout))
		return struct{}{}, nil
	})
	fmt.Println("error:", err)
	// Output:
	// finished: [1ms 10ms]
	// timed out: true
	// error: <nil>
}
