package serve

import "github.com/loopkernel/loopkernel/kernel"

// echoConn writes back what it receives. When the peer does not read its
// echoes, the transport's high water mark pauses the protocol, which stops
// reading until the buffer drains: a slow reader cannot grow memory. A
// connection that sends nothing for the idle timeout (including one stuck
// because it does not read) is closed.
type echoConn struct {
	t    kernel.Transport
	lim  *Limits
	sw   *sweep
	dl   deadline
	lost bool
}

func (c *echoConn) ConnectionMade(t kernel.BaseTransport) {
	c.t = t.(kernel.Transport)
	c.sw.join(&c.dl, c)
	c.dl.arm(c.lim.IdleTimeout)
}

func (c *echoConn) DataReceived(b []byte) {
	c.dl.arm(c.lim.IdleTimeout)
	c.t.Write(b)
}

func (c *echoConn) EOFReceived() bool { return false }
func (c *echoConn) ConnectionLost(error) {
	c.lost = true
	c.dl.leave()
}
func (c *echoConn) PauseWriting()  { c.t.PauseReading() }
func (c *echoConn) ResumeWriting() { c.t.ResumeReading() }

func (c *echoConn) expire() {
	if c.lost {
		return
	}
	c.sw.log.event(c.sw.now, false, "serve echo: idle timeout, closing", peerOf(c.t), "idle_timeout", c.lim.IdleTimeout)
	closeExpired(c.t)
}
