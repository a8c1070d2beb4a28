package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/policy"
)

// The spec's four event-loop examples ("Event loop examples" in
// asyncio-base-event-loop.rst), run for real on the selected policy. Each
// gets its loop the way the Python original does, from GetEventLoop.

type example struct {
	name    string
	summary string
	run     func(e *env, loop *kernel.Loop) error
}

var examples = []example{
	{"hello", "Hello World with CallSoon", exampleHello},
	{"date", "display the current date every second for 5 seconds with CallLater", exampleDate},
	{"watch-fd", "watch a socket-pair descriptor for read events with AddReader", exampleWatchFD},
	{"signals", "handle SIGINT and SIGTERM with AddSignalHandler; waits for one", exampleSignals},
}

var exampleOpts struct {
	selfSignal bool
	interval   time.Duration
	duration   time.Duration
}

var exampleCmd = &command{
	name:     "example",
	synopsis: "NAME",
	summary:  "run one of the asyncio spec's event-loop examples",
	help:     exampleHelp(),
	flags: func(fs *flag.FlagSet) {
		fs.BoolVar(&exampleOpts.selfSignal, "self-signal", false,
			"signals: send SIGINT to this process once the loop runs, instead of waiting for one")
		fs.DurationVar(&exampleOpts.interval, "interval", time.Second, "date: time between two dates")
		fs.DurationVar(&exampleOpts.duration, "duration", 5*time.Second, "date: how long to keep displaying")
	},
	run: runExample,
}

func exampleHelp() string {
	var b strings.Builder
	b.WriteString("Examples:\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, ex := range examples {
		fmt.Fprintf(tw, "  %s\t%s\n", ex.name, ex.summary)
	}
	tw.Flush()
	return b.String()
}

func runExample(e *env, args []string) error {
	if len(args) != 1 {
		return usagef("want exactly one example NAME, got %d arguments", len(args))
	}
	var ex *example
	for i := range examples {
		if examples[i].name == args[0] {
			ex = &examples[i]
		}
	}
	if ex == nil {
		names := make([]string, len(examples))
		for i, x := range examples {
			names[i] = x.name
		}
		return usagef("unknown example %q (known: %s)", args[0], strings.Join(names, ", "))
	}
	if _, err := e.policy(); err != nil {
		return err
	}
	loop, err := policy.GetEventLoop()
	if err != nil {
		return err
	}
	defer policy.SetEventLoop(nil)
	runErr := ex.run(e, loop)
	// As in the originals, the loop is closed at the end (close also
	// releases the selector, which for a plugin policy ends the plugin).
	if err := loop.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("closing the loop: %w", err)
	}
	return runErr
}

func exampleHello(e *env, loop *kernel.Loop) error {
	helloWorld := func() {
		fmt.Fprintln(e.stdout, "Hello World")
		loop.Stop()
	}
	// Schedule a call to helloWorld.
	if _, err := loop.CallSoon(helloWorld); err != nil {
		return err
	}
	// Blocking call interrupted by loop.Stop().
	return loop.RunForever()
}

func exampleDate(e *env, loop *kernel.Loop) error {
	interval, duration := exampleOpts.interval, exampleOpts.duration
	if interval <= 0 || duration < 0 {
		return usagef("--interval must be positive and --duration not negative")
	}
	endTime := loop.Time() + duration
	var displayDate func()
	displayDate = func() {
		// Python's datetime.datetime.now() format.
		fmt.Fprintln(e.stdout, time.Now().Format("2006-01-02 15:04:05.000000"))
		if loop.Time()+interval < endTime {
			if _, err := loop.CallLater(interval, displayDate); err != nil {
				fmt.Fprintln(e.stderr, err)
				loop.Stop()
			}
		} else {
			loop.Stop()
		}
	}
	// Schedule the first call to displayDate.
	if _, err := loop.CallSoon(displayDate); err != nil {
		return err
	}
	// Blocking call interrupted by loop.Stop().
	return loop.RunForever()
}

func exampleWatchFD(e *env, loop *kernel.Loop) error {
	// Create a pair of connected descriptors.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socketpair: %w", err)
	}
	rsock, wsock := fds[0], fds[1]
	// We are done at the end: close the descriptors (the loop is closed by
	// the caller).
	defer unix.Close(rsock)
	defer unix.Close(wsock)

	var cbErr error
	reader := func() {
		buf := make([]byte, 100)
		n, err := unix.Read(rsock, buf)
		if err == unix.EAGAIN {
			return // spurious wake-up: wait for the next one
		}
		if err != nil {
			cbErr = fmt.Errorf("read: %w", err)
		} else {
			fmt.Fprintln(e.stdout, "Received:", string(buf[:n]))
		}
		// We are done: unregister the descriptor.
		if _, err := loop.RemoveReader(rsock); err != nil && cbErr == nil {
			cbErr = err
		}
		// Stop the event loop.
		loop.Stop()
	}
	// Register the descriptor for read events.
	if err := loop.AddReader(rsock, reader); err != nil {
		return err
	}
	// Simulate the reception of data from the network.
	if _, err := loop.CallSoon(func() {
		if _, err := unix.Write(wsock, []byte("abc")); err != nil {
			cbErr = fmt.Errorf("write: %w", err)
			loop.Stop()
		}
	}); err != nil {
		return err
	}
	// Run the event loop.
	if err := loop.RunForever(); err != nil {
		return err
	}
	return cbErr
}

func exampleSignals(e *env, loop *kernel.Loop) error {
	askExit := func(signame string) func() {
		return func() {
			fmt.Fprintf(e.stdout, "Got signal %s: exit\n", signame)
			loop.Stop()
		}
	}
	for _, s := range []struct {
		sig  unix.Signal
		name string
	}{{unix.SIGINT, "SIGINT"}, {unix.SIGTERM, "SIGTERM"}} {
		if err := loop.AddSignalHandler(s.sig, askExit(s.name)); err != nil {
			return err
		}
	}
	fmt.Fprintln(e.stdout, "Event loop running forever, press Ctrl+C to interrupt.")
	fmt.Fprintf(e.stdout, "pid %d: send SIGINT or SIGTERM to exit.\n", os.Getpid())
	if exampleOpts.selfSignal {
		if _, err := loop.CallSoon(func() {
			if err := unix.Kill(os.Getpid(), unix.SIGINT); err != nil {
				fmt.Fprintln(e.stderr, "self-signal:", err)
				loop.Stop()
			}
		}); err != nil {
			return err
		}
	}
	return loop.RunForever()
}
