package serve

import "github.com/loopkernel/loopkernel/kernel"

// echoConn writes back what it receives. When the peer does not read its
// echoes, the transport's high water mark pauses the protocol, which stops
// reading until the buffer drains: a slow reader cannot grow memory.
type echoConn struct{ t kernel.Transport }

func (c *echoConn) ConnectionMade(t kernel.BaseTransport) { c.t = t.(kernel.Transport) }
func (c *echoConn) DataReceived(b []byte)                 { c.t.Write(b) }
func (c *echoConn) EOFReceived() bool                     { return false }
func (c *echoConn) ConnectionLost(error)                  {}
func (c *echoConn) PauseWriting()                         { c.t.PauseReading() }
func (c *echoConn) ResumeWriting()                        { c.t.ResumeReading() }
