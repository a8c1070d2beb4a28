package gonet

import (
	"context"
	"fmt"
	"net"

	"github.com/loopkernel/loopkernel/kernel"
)

// Dial connects to address over network ("tcp", "tcp4", "tcp6" or "unix")
// on the coroutine's loop, with the loop's resolver and Happy Eyeballs, and
// returns the connection as a Conn for other goroutines to use.
func Dial(co *kernel.Co, network, address string) (*Conn, error) {
	c := newConn(co.Loop(), network)
	factory := func() *protocol { return &protocol{c: c} }
	var err error
	switch network {
	case "tcp", "tcp4", "tcp6":
		var host, port string
		host, port, err = net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("gonet: dial %s %q: %w", network, address, err)
		}
		_, _, err = kernel.CreateConnection(co, factory, host, port, &kernel.ConnOptions{Family: family(network)})
	case "unix":
		_, _, err = kernel.CreateUnixConnection(co, factory, address, nil)
	default:
		return nil, fmt.Errorf("gonet: dial: network %q: %w", network, net.UnknownNetworkError(network))
	}
	if err != nil {
		return nil, fmt.Errorf("gonet: dial %s %s: %w", network, address, err)
	}
	return c, nil
}

// Dialer dials on a loop from any other goroutine: set an
// http.Transport's DialContext to a Dialer's, and net/http's client runs its
// connections on the loop.
type Dialer struct {
	Loop *kernel.Loop
}

// DialContext is Dial from outside the loop: the connection is made by a
// task on the loop while this goroutine waits. Cancelling ctx cancels the
// task, and a connection made after all is closed.
func (d Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	type result struct {
		c   *Conn
		err error
	}
	out := make(chan result, 1)
	var task *kernel.Task[*Conn] // set and read on the loop's goroutine only
	if _, err := d.Loop.CallSoonThreadsafe(func() {
		t, err := kernel.CreateTask(d.Loop, func(co *kernel.Co) (*Conn, error) {
			return Dial(co, network, address)
		})
		if err != nil {
			out <- result{nil, fmt.Errorf("gonet: dial %s %s: %w", network, address, err)}
			return
		}
		task = t
		t.AddDoneCallback(func(t *kernel.Task[*Conn]) {
			c, err := t.Result()
			out <- result{c, err}
		})
	}); err != nil {
		return nil, fmt.Errorf("gonet: dial %s %s: %w", network, address, err)
	}
	select {
	case r := <-out:
		if r.err != nil {
			return nil, r.err
		}
		return r.c, nil
	case <-ctx.Done():
		// The loop runs callbacks in order, so the task exists by the
		// time this one runs (unless it could not be created).
		d.Loop.CallSoonThreadsafe(func() {
			if task != nil {
				task.Cancel()
			}
		})
		go func() {
			if r := <-out; r.err == nil {
				r.c.Close() // made after all: nobody will use it
			}
		}()
		return nil, fmt.Errorf("gonet: dial %s %s: %w", network, address, ctx.Err())
	}
}
