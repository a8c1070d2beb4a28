package gonet

import (
	"fmt"
	"net"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
)

// Listener is a net.Listener over a loop's server: the loop accepts, and
// Accept hands each connection, already a Conn, to the goroutine asking.
// Like a Conn, its methods are for goroutines other than the loop's.
type Listener struct {
	loop *kernel.Loop
	srv  *kernel.Server
	addr net.Addr

	mu     sync.Mutex
	queue  []*Conn // accepted by the loop, not yet by Accept
	closed bool
	ready  chan struct{} // one-slot wake-up, see signal
	done   chan struct{}
}

var _ net.Listener = (*Listener)(nil)

// Listen starts serving network ("tcp", "tcp4", "tcp6" or "unix") at
// address on the coroutine's loop and returns its listener; "host:0" picks
// a free port (Addr tells which). Connections are accepted by the loop as
// they come, as a kernel.Server accepts them, and wait for Accept in a
// queue; a program that stops calling Accept should Close the listener.
func Listen(co *kernel.Co, network, address string) (*Listener, error) {
	ln := &Listener{loop: co.Loop(), ready: make(chan struct{}, 1), done: make(chan struct{})}
	factory := func() *protocol {
		return &protocol{c: newConn(ln.loop, network), made: ln.push}
	}
	var err error
	switch network {
	case "tcp", "tcp4", "tcp6":
		var host, port string
		host, port, err = net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("gonet: listen %s %q: %w", network, address, err)
		}
		var hosts []string
		if host != "" {
			hosts = []string{host}
		}
		ln.srv, err = kernel.CreateServer(co, factory, hosts, port, &kernel.ServerOptions{Family: family(network)})
	case "unix":
		ln.srv, err = kernel.CreateUnixServer(co, factory, address, nil)
	default:
		return nil, fmt.Errorf("gonet: listen: network %q: %w", network, net.UnknownNetworkError(network))
	}
	if err != nil {
		return nil, fmt.Errorf("gonet: listen %s %s: %w", network, address, err)
	}
	if socks := ln.srv.Sockets(); len(socks) > 0 {
		ln.addr = socks[0].LocalAddr()
	}
	return ln, nil
}

// push queues a connection the loop accepted (on the loop's goroutine).
func (ln *Listener) push(c *Conn) {
	ln.mu.Lock()
	if ln.closed {
		ln.mu.Unlock()
		c.t.Abort()
		return
	}
	ln.queue = append(ln.queue, c)
	ln.mu.Unlock()
	signal(ln.ready)
}

// Accept waits for the next connection.
func (ln *Listener) Accept() (net.Conn, error) {
	for {
		ln.mu.Lock()
		if ln.closed {
			ln.mu.Unlock()
			return nil, ln.opError(net.ErrClosed)
		}
		if len(ln.queue) > 0 {
			c := ln.queue[0]
			ln.queue[0] = nil
			ln.queue = ln.queue[1:]
			more := len(ln.queue) > 0
			ln.mu.Unlock()
			if more {
				signal(ln.ready)
			}
			return c, nil
		}
		ln.mu.Unlock()
		select {
		case <-ln.ready:
		case <-ln.done:
		}
	}
}

// Close stops the server; connections not yet accepted are aborted, those
// accepted are left to their owners, as with net.Listener.
func (ln *Listener) Close() error {
	ln.mu.Lock()
	if ln.closed {
		ln.mu.Unlock()
		return ln.opError(net.ErrClosed)
	}
	ln.closed = true
	pending := ln.queue
	ln.queue = nil
	close(ln.done)
	ln.mu.Unlock()
	ln.loop.CallSoonThreadsafe(func() {
		ln.srv.Close()
		for _, c := range pending {
			c.t.Abort()
		}
	})
	return nil
}

// Addr returns the address the server listens on (the first, if the host
// resolved to several).
func (ln *Listener) Addr() net.Addr { return ln.addr }

func (ln *Listener) opError(err error) error {
	e := &net.OpError{Op: "accept", Addr: ln.addr, Err: err}
	if ln.addr != nil {
		e.Net = ln.addr.Network()
	}
	return e
}

func family(network string) int {
	switch network {
	case "tcp4":
		return unix.AF_INET
	case "tcp6":
		return unix.AF_INET6
	}
	return 0
}
