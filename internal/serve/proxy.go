package serve

import (
	"crypto/tls"
	"strings"

	"github.com/loopkernel/loopkernel/kernel"
)

// proxyConn is the client side of a proxied connection; upstreamConn the
// side towards the target. Each side writes what it receives to the other,
// half-closes are passed on, and back-pressure crosses over: when one side's
// write buffer is full, the other side stops reading.
//
// One deadline covers the pair: the connect timeout while the upstream is
// being reached, then the idle timeout, pushed back by data in either
// direction.
type proxyConn struct {
	loop     *kernel.Loop
	upstream string      // host:port, or unix:PATH
	upTLS    *tls.Config // TLS towards the upstream, or nil
	lim      *Limits
	sw       *sweep
	dl       deadline
	t        kernel.Transport
	up       kernel.Transport
	connect  *kernel.Task[struct{}] // while connecting
	timedOut bool                   // the connect timeout cancelled connect
	eofIn    bool                   // the client half-closed
	eofUp    bool                   // the upstream half-closed
	lost     bool
}

type upstreamConn struct {
	c *proxyConn
	t kernel.Transport
}

func (c *proxyConn) ConnectionMade(t kernel.BaseTransport) {
	c.t = t.(kernel.Transport)
	c.t.PauseReading() // until the upstream is connected
	c.sw.join(&c.dl, c)
	c.dl.arm(c.lim.ConnectTimeout)
	task, err := kernel.CreateTask(c.loop, func(co *kernel.Co) (struct{}, error) {
		factory := func() *upstreamConn { return &upstreamConn{c: c} }
		var up kernel.Transport
		var err error
		opts := &kernel.ConnOptions{SSL: c.upTLS}
		if path, ok := strings.CutPrefix(c.upstream, "unix:"); ok {
			up, _, err = kernel.CreateUnixConnection(co, factory, path, opts)
		} else {
			host, port := splitHostPort(c.upstream)
			up, _, err = kernel.CreateConnection(co, factory, host, port, opts)
		}
		c.connect = nil
		if err != nil {
			if !c.timedOut && !c.lost {
				c.sw.log.event(c.sw.now, true, "serve proxy: upstream connection failed", peerOf(c.t),
					"upstream", c.upstream, "error", err)
			}
			c.t.Close()
			return struct{}{}, nil
		}
		if c.lost {
			up.Close()
			return struct{}{}, nil
		}
		c.up = up
		c.dl.arm(c.lim.IdleTimeout)
		c.t.ResumeReading()
		return struct{}{}, nil
	})
	if err != nil {
		c.t.Abort()
		return
	}
	if !task.Done() {
		c.connect = task
	}
}

// expire is the connect timeout or the idle timeout.
func (c *proxyConn) expire() {
	if c.lost {
		return
	}
	if c.connect != nil {
		c.timedOut = true
		c.sw.log.event(c.sw.now, true, "serve proxy: upstream connect timeout, closing", peerOf(c.t),
			"upstream", c.upstream, "connect_timeout", c.lim.ConnectTimeout)
		c.connect.Cancel() // the task closes the client side
		return
	}
	c.sw.log.event(c.sw.now, false, "serve proxy: idle timeout, closing", peerOf(c.t), "idle_timeout", c.lim.IdleTimeout)
	if c.up != nil {
		closeExpired(c.up)
	}
	closeExpired(c.t)
}

func (c *proxyConn) DataReceived(b []byte) {
	c.dl.arm(c.lim.IdleTimeout)
	c.up.Write(b)
}

func (c *proxyConn) EOFReceived() bool {
	c.eofIn = true
	if c.eofUp {
		c.up.Close()
		return false
	}
	return halfClose(c.up)
}

// halfClose passes a half-close on: WriteEOF where the transport can, and
// a whole close where it cannot (TLS has no half-close), answering what
// EOFReceived returns.
func halfClose(t kernel.Transport) bool {
	if !t.CanWriteEOF() {
		t.Close()
		return false
	}
	t.WriteEOF()
	return true
}

func (c *proxyConn) ConnectionLost(error) {
	c.lost = true
	c.dl.leave()
	if c.connect != nil {
		c.connect.Cancel()
	}
	if c.up != nil {
		c.up.Close()
	}
}

func (c *proxyConn) PauseWriting()  { c.up.PauseReading() }
func (c *proxyConn) ResumeWriting() { c.up.ResumeReading() }

func (u *upstreamConn) ConnectionMade(t kernel.BaseTransport) { u.t = t.(kernel.Transport) }
func (u *upstreamConn) DataReceived(b []byte) {
	u.c.dl.arm(u.c.lim.IdleTimeout)
	u.c.t.Write(b)
}

func (u *upstreamConn) EOFReceived() bool {
	u.c.eofUp = true
	if u.c.eofIn {
		u.c.t.Close()
		return false
	}
	return halfClose(u.c.t)
}

func (u *upstreamConn) ConnectionLost(error) { u.c.t.Close() }
func (u *upstreamConn) PauseWriting()        { u.c.t.PauseReading() }
func (u *upstreamConn) ResumeWriting()       { u.c.t.ResumeReading() }
