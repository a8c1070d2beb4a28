package kernel_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/selector"
)

// newEpollLoop is what asyncio.new_event_loop() is in these examples: a loop
// on the bundled in-process epoll selector. (Programs usually go through
// policy.GetEventLoop, which picks the selector by name.)
func newEpollLoop() *kernel.Loop {
	sel, err := selector.NewEpoll()
	if err != nil {
		panic(err)
	}
	return kernel.New(sel)
}

// Hello World with CallSoon (the spec's first example): the callback
// prints "Hello World" and stops the loop; RunForever returns once it has.
func ExampleLoop_CallSoon() {
	loop := newEpollLoop()
	defer loop.Close()

	helloWorld := func() {
		fmt.Println("Hello World")
		loop.Stop()
	}
	// Schedule a call to helloWorld.
	loop.CallSoon(helloWorld)
	// Blocking call interrupted by loop.Stop().
	loop.RunForever()
	// Output: Hello World
}

// Display the current date with CallLater (the spec's second example). The
// spec's callback prints the date every second and reschedules itself until
// five seconds have passed:
//
//	displayDate = func() {
//		fmt.Println(time.Now())
//		if loop.Time()+time.Second < endTime {
//			loop.CallLater(time.Second, displayDate)
//		} else {
//			loop.Stop()
//		}
//	}
//
// (`loopkernel example date` runs exactly that.) So that this example runs
// in an instant and its output can be checked, it ticks every 10 ms and
// prints a tick count instead of the date; it still shows that CallLater
// never runs a callback early.
func ExampleLoop_CallLater() {
	loop := newEpollLoop()
	defer loop.Close()

	const interval = 10 * time.Millisecond
	start := loop.Time()
	ticks := 0
	var displayDate func()
	displayDate = func() {
		ticks++
		fmt.Println("tick", ticks)
		if ticks < 5 {
			loop.CallLater(interval, displayDate)
		} else {
			loop.Stop()
		}
	}
	// Schedule the first call to displayDate.
	loop.CallSoon(displayDate)
	// Blocking call interrupted by loop.Stop().
	loop.RunForever()
	fmt.Println("four intervals passed:", loop.Time()-start >= 4*interval)
	// Output:
	// tick 1
	// tick 2
	// tick 3
	// tick 4
	// tick 5
	// four intervals passed: true
}

// Watch a file descriptor for read events (the spec's third example): wait
// until one end of a socket pair has data, read it, stop watching and stop
// the loop.
func ExampleLoop_AddReader() {
	// Create a pair of connected descriptors.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		panic(err)
	}
	rsock, wsock := fds[0], fds[1]
	loop := newEpollLoop()

	reader := func() {
		buf := make([]byte, 100)
		n, err := unix.Read(rsock, buf)
		if err != nil {
			fmt.Println("read:", err)
			return
		}
		fmt.Println("Received:", string(buf[:n]))
		// We are done: unregister the descriptor.
		loop.RemoveReader(rsock)
		// Stop the event loop.
		loop.Stop()
	}
	// Register the descriptor for read events.
	loop.AddReader(rsock, reader)
	// Simulate the reception of data from the network.
	loop.CallSoon(func() { unix.Write(wsock, []byte("abc")) })
	// Run the event loop.
	loop.RunForever()
	// We are done: close the descriptors and the loop.
	unix.Close(rsock)
	unix.Close(wsock)
	loop.Close()
	// Output: Received: abc
}

// Set signal handlers for SIGINT and SIGTERM (the spec's fourth example).
// The spec waits for the user to send a signal (`loopkernel example signals`
// does); to run unattended, this example sends SIGINT to itself once the loop
// is running.
func ExampleLoop_AddSignalHandler() {
	loop := newEpollLoop()
	defer loop.Close()

	askExit := func(signame string) func() {
		return func() {
			fmt.Printf("Got signal %s: exit\n", signame)
			loop.Stop()
		}
	}
	for _, s := range []struct {
		sig  unix.Signal
		name string
	}{{unix.SIGINT, "SIGINT"}, {unix.SIGTERM, "SIGTERM"}} {
		if err := loop.AddSignalHandler(s.sig, askExit(s.name)); err != nil {
			panic(err)
		}
	}
	fmt.Println("Event loop running forever, send SIGINT or SIGTERM to exit.")
	loop.CallSoon(func() { unix.Kill(unix.Getpid(), unix.SIGINT) })
	loop.RunForever()
	// Output:
	// Event loop running forever, send SIGINT or SIGTERM to exit.
	// Got signal SIGINT: exit
}

// CallSoonThreadsafe is how another goroutine hands work to the loop: it
// queues the callback and wakes the loop out of its selector wait.
func ExampleLoop_CallSoonThreadsafe() {
	loop := newEpollLoop()
	defer loop.Close()

	go func() {
		// Some other goroutine finishes its work...
		result := 6 * 7
		// ...and reports back on the loop's goroutine.
		loop.CallSoonThreadsafe(func() {
			fmt.Println("result from another goroutine:", result)
			loop.Stop()
		})
	}()
	// Nothing is scheduled: the loop blocks in its selector until woken.
	loop.RunForever()
	// Output: result from another goroutine: 42
}

// CreateFuture makes a future the loop can complete later; CreateTask runs
// a coroutine that awaits it. RunUntilComplete drives the loop until the
// task is done.
func ExampleCreateTask() {
	loop := newEpollLoop()
	defer loop.Close()

	fut := kernel.CreateFuture[string](loop)
	loop.CallLater(5*time.Millisecond, func() { fut.SetResult("world") })

	task, err := kernel.CreateTask(loop, func(co *kernel.Co) (string, error) {
		who, err := fut.Await(co) // suspends this coroutine, not the loop
		if err != nil {
			return "", err
		}
		if err := co.Sleep(time.Millisecond); err != nil {
			return "", err
		}
		return "hello " + who, nil
	})
	if err != nil {
		panic(err)
	}
	if err := loop.RunUntilComplete(task); err != nil {
		panic(err)
	}
	v, err := task.Result()
	fmt.Println(v, err)
	// Output: hello world <nil>
}

// A future's done callbacks run on the loop once it has a result.
func ExampleCreateFuture() {
	loop := newEpollLoop()
	defer loop.Close()

	fut := kernel.CreateFuture[int](loop)
	fut.AddDoneCallback(func(f *kernel.Future[int]) {
		v, _ := f.Result()
		fmt.Println("done with", v)
	})
	loop.CallSoon(func() { fut.SetResult(7) })
	// RunUntilComplete stops the loop through a done callback of its own,
	// added after ours, so ours has run by the time it returns.
	if err := loop.RunUntilComplete(fut); err != nil {
		panic(err)
	}
	// Output: done with 7
}

// RunInExecutor runs a blocking function off the loop and returns a future
// for its result, so the loop keeps serving callbacks meanwhile. The
// function's context ends when the future is done or cancelled, or the loop
// closes.
func ExampleRunInExecutor() {
	loop := newEpollLoop()
	defer loop.Close()

	blocking := func(ctx context.Context) (int, error) {
		select { // stands in for a blocking call that honours its context
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		return 1 + 2 + 3, nil
	}
	fut, err := kernel.RunInExecutor(loop, nil, blocking)
	if err != nil {
		panic(err)
	}
	if err := loop.RunUntilComplete(fut); err != nil {
		panic(err)
	}
	v, err := fut.Result()
	fmt.Println(v, err)
	// Output: 6 <nil>
}

// A callback that panics does not bring the loop down: the panic goes to the
// exception handler, here a custom one, and the loop carries on.
func ExampleLoop_SetExceptionHandler() {
	loop := newEpollLoop()
	defer loop.Close()

	loop.SetExceptionHandler(func(l *kernel.Loop, ctx kernel.ErrorContext) {
		var p *kernel.PanicError
		if errors.As(ctx.Err, &p) {
			fmt.Println("handled:", p.Value)
		}
	})
	loop.CallSoon(func() { panic("boom") })
	loop.CallSoon(func() {
		fmt.Println("the loop carried on")
		loop.Stop()
	})
	loop.RunForever()
	// Output:
	// handled: boom
	// the loop carried on
}
