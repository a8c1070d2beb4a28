package dataplane_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/dataplane"
)

// The two ends of the data plane in one process: Serve answers with a real
// selector (in a plugin it runs in the plugin process), and the Client is
// the sdk.Selector the kernel drives. The descriptor stays the host's; the
// plugin side watches a copy passed with SCM_RIGHTS.
func Example() {
	host, plug, err := dataplane.Socketpair()
	if err != nil {
		fmt.Println(err)
		return
	}
	real, _ := selector.NewEpoll()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go dataplane.Serve(ctx, plug, real, hclog.NewNullLogger())

	c, err := dataplane.NewClient(host, hclog.NewNullLogger())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	var p [2]int
	unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC)
	defer unix.Close(p[0])
	defer unix.Close(p[1])

	tok := sdk.MakeToken(1, 1)
	c.Register(p[0], tok, sdk.Read) // sent with the next Wait
	unix.Write(p[1], []byte("x"))
	events := make([]sdk.Event, 8)
	n, err := c.Wait(events, time.Second)
	fmt.Println(n, err, events[0].Token, events[0].Events)
	// Output: 1 <nil> 1.1 read
}

// wordCount is an executor back-end for the call-plane example: one
// function, "words", that counts the words of its argument.
type wordCount struct{}

func (wordCount) Call(_ context.Context, fn string, arg []byte) ([]byte, error) {
	if fn != "words" {
		return nil, fmt.Errorf("call %q: %w", fn, sdk.ErrUnknownFunc)
	}
	return fmt.Appendf(nil, "%d", len(strings.Fields(string(arg)))), nil
}

func (wordCount) Close() error { return nil }

// The two ends of a call plane in one process: ServeCalls answers with an
// executor back-end (in a plugin it runs in the plugin process), and the
// CallClient is the sdk.Executor the host calls; any number of calls may be
// in flight on it at once.
func ExampleServeCalls() {
	host, plug, err := dataplane.Socketpair()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer plug.Close()
	ctx := context.Background()
	served := make(chan error, 1)
	go func() {
		served <- dataplane.ServeCalls(ctx, plug, dataplane.CallHandlers{Name: "wc", Executor: wordCount{}}, nil)
	}()
	defer func() { <-served }() // goodbye (c.Close) ends it

	c, err := dataplane.NewCallClient(host, dataplane.FamilyExecutor, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	res, err := c.Call(ctx, "words", []byte("one plane per plugin"))
	fmt.Println(c.Name(), string(res), err)
	_, err = c.Call(ctx, "lines", nil)
	fmt.Println(errors.Is(err, sdk.ErrUnknownFunc))
	// Output:
	// wc 4 <nil>
	// true
}

// NewCallClient says hello for one family; a plugin that does not serve it
// refuses, and the host learns so before any call.
func ExampleNewCallClient() {
	host, plug, err := dataplane.Socketpair()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer plug.Close()
	served := make(chan error, 1)
	go func() {
		served <- dataplane.ServeCalls(context.Background(), plug, dataplane.CallHandlers{Name: "wc", Executor: wordCount{}}, nil)
	}()
	_, err = dataplane.NewCallClient(host, dataplane.FamilyResolver, nil)
	fmt.Println(errors.Is(err, unix.EPROTONOSUPPORT))
	fmt.Println(<-served)
	// Output:
	// true
	// dataplane: the host asked for a resolver, which this plugin does not serve
}

// Ping and LastMoved are a health check's two signs of life: an answer, or
// frames still moving (a ping waits its turn behind a large call).
func ExampleCallClient_LastMoved() {
	host, plug, err := dataplane.Socketpair()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer plug.Close()
	served := make(chan error, 1)
	go func() {
		served <- dataplane.ServeCalls(context.Background(), plug, dataplane.CallHandlers{Name: "wc", Executor: wordCount{}}, nil)
	}()
	defer func() { <-served }()
	c, err := dataplane.NewCallClient(host, dataplane.FamilyExecutor, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	before := c.LastMoved()
	err = c.Ping(context.Background())
	fmt.Println(err, c.LastMoved().After(before))
	// Output: <nil> true
}

// EachRegistration hands the client's registrations to an in-process
// selector, as a supervisor falling back from a plugin it could not keep
// alive does.
func ExampleClient_EachRegistration() {
	host, plug, err := dataplane.Socketpair()
	if err != nil {
		fmt.Println(err)
		return
	}
	real, _ := selector.NewEpoll()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go dataplane.Serve(ctx, plug, real, hclog.NewNullLogger())
	c, err := dataplane.NewClient(host, hclog.NewNullLogger())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	var p [2]int
	unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC)
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	c.Register(p[0], sdk.MakeToken(1, 1), sdk.Read)

	twin, _ := selector.NewPoll()
	defer twin.Close()
	c.EachRegistration(func(fd int, tok sdk.Token, interest sdk.Events) {
		fmt.Println("carried over:", fd == p[0], tok == sdk.MakeToken(1, 1), interest, twin.Register(fd, tok, interest))
	})
	unix.Write(p[1], []byte("x"))
	events := make([]sdk.Event, 8)
	n, err := twin.Wait(events, time.Second)
	fmt.Println(n, events[0].Events, err)
	// Output:
	// carried over: true true read <nil>
	// 1 read <nil>
}
