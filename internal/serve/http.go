package serve

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/loopkernel/loopkernel/kernel"
)

// Routes of the HTTP server: "/" and "/hello" answer a fixed greeting;
// "/static/NAME" sends the file NAME below the root directory (when one is
// set) with kernel.Sendfile; everything else is 404. Only GET and HEAD are
// served; request bodies (Content-Length, up to the body limit) are read and
// discarded; chunked request bodies are answered 501. Percent-encoding in
// paths is decoded.

const helloBody = "Hello, World!\n"

var (
	helloKeepAlive = []byte("HTTP/1.1 200 OK\r\nServer: loopkernel\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
		strconv.Itoa(len(helloBody)) + "\r\n\r\n" + helloBody)
	helloClose = []byte("HTTP/1.1 200 OK\r\nServer: loopkernel\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
		strconv.Itoa(len(helloBody)) + "\r\nConnection: close\r\n\r\n" + helloBody)
	timeout408 = []byte("HTTP/1.1 408 Request Timeout\r\nServer: loopkernel\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
)

// httpServer is what the HTTP connections of one loop share.
type httpServer struct {
	loop *kernel.Loop
	root *staticRoot // nil serves no files
	lim  *Limits
	head headLimits
	sw   *sweep
}

// phase is what a connection is waiting for, which decides its deadline.
type phase uint8

const (
	phaseNone   phase = iota
	phaseIdle         // between requests: the idle timeout
	phaseHead         // part of a request head is in: the header timeout
	phaseBody         // discarding a body: the body timeout
	phaseSend         // sending a file: the send timeout per chunk
	phaseLinger       // refused, write side shut, draining input: lingerTimeout
)

// httpConn is one HTTP connection. Requests are parsed straight from the
// transport's buffer when they arrive whole; a partial request, or requests
// pipelined behind a file being sent, are copied into buf.
type httpConn struct {
	s       *httpServer
	t       kernel.Transport
	dl      deadline
	phase   phase
	started bool // a request head was parsed since the last settle
	buf     []byte
	scratch []byte
	discard int64 // body bytes still to skip
	sending bool  // a static file is on its way; hold further requests
	// sendTask sends the static file; the send timeout cancels it.
	sendTask *kernel.Task[struct{}]
	done     bool // the connection is closing; ignore further input
}

func (c *httpConn) ConnectionMade(t kernel.BaseTransport) {
	c.t = t.(kernel.Transport)
	c.s.sw.join(&c.dl, c)
	// The first request's head is timed from the accept, as Go's
	// ReadHeaderTimeout does: a connection that never sends is the same
	// attack as one that sends slowly.
	c.phase = phaseHead
	c.dl.arm(c.s.lim.HeaderTimeout)
}

func (c *httpConn) ConnectionLost(error) {
	c.done = true
	c.dl.leave()
	if c.sendTask != nil {
		// Lost under a sendfile (a shutdown's AbortClients, say): the send
		// would otherwise wait on the closed descriptor for good, holding
		// the file open.
		c.sendTask.Cancel()
	}
}

func (c *httpConn) EOFReceived() bool { return false }
func (c *httpConn) PauseWriting()     { c.t.PauseReading() }
func (c *httpConn) ResumeWriting() {
	if !c.sending {
		c.t.ResumeReading()
	}
}

func (c *httpConn) DataReceived(b []byte) {
	if c.done {
		return // closing, or lingering after a refusal: discard
	}
	if len(c.buf) == 0 && !c.sending {
		n := c.process(b)
		if rest := b[n:]; len(rest) > 0 && !c.done {
			c.buf = append(c.buf, rest...)
		}
		c.settle()
		return
	}
	c.buf = append(c.buf, b...)
	if !c.sending {
		c.drainBuffered()
	}
}

func (c *httpConn) drainBuffered() {
	n := c.process(c.buf)
	c.buf = c.buf[:copy(c.buf, c.buf[n:])]
	c.settle()
}

// settle moves the connection to the phase its state implies and arms that
// phase's deadline when the phase changes or a new request began. Staying
// in a phase keeps its deadline: a head or body that trickles in does not
// push its own deadline back. This is a few compares and a store per
// request; see sweep.go for why no timer is touched.
func (c *httpConn) settle() {
	started := c.started
	c.started = false
	if c.done {
		return
	}
	var p phase
	var d time.Duration
	switch {
	case c.sending:
		p, d = phaseSend, c.s.lim.SendTimeout
	case c.discard > 0:
		p, d = phaseBody, c.s.lim.BodyTimeout
	case len(c.buf) > 0:
		p, d = phaseHead, c.s.lim.HeaderTimeout
	default:
		p, d = phaseIdle, c.s.lim.IdleTimeout
	}
	if p == c.phase && !started {
		return
	}
	c.phase = p
	c.dl.arm(d)
}

// expire is called by the sweep when the current phase's deadline passed.
func (c *httpConn) expire() {
	if c.done && c.phase != phaseLinger {
		return
	}
	peer := peerOf(c.t)
	log := &c.s.sw.log
	now := c.s.sw.now
	switch c.phase {
	case phaseIdle:
		log.event(now, false, "serve http: idle keep-alive timeout, closing", peer, "idle_timeout", c.s.lim.IdleTimeout)
	case phaseHead:
		// A connection that sent nothing at all is most often a browser's
		// preconnect, not an attack: info, not warning.
		log.event(now, len(c.buf) > 0, "serve http: header timeout, closing", peer,
			"header_timeout", c.s.lim.HeaderTimeout, "head_bytes_received", len(c.buf))
		if len(c.buf) > 0 && c.t.GetWriteBufferSize() == 0 {
			c.t.Write(timeout408)
		}
	case phaseBody:
		log.event(now, true, "serve http: body timeout, closing", peer,
			"body_timeout", c.s.lim.BodyTimeout, "body_bytes_missing", c.discard)
	case phaseSend:
		log.event(now, true, "serve http: send timeout, the client is not reading the file; closing", peer,
			"send_timeout", c.s.lim.SendTimeout, "chunk_bytes", sendChunk)
		c.done = true
		// The transport must not be aborted under a sendfile in flight
		// (its socket would close while the send still waits on the
		// descriptor); cancelling the send lets the task abort it after.
		if c.sendTask != nil {
			c.sendTask.Cancel()
		} else {
			c.t.Abort()
		}
		return
	case phaseLinger:
		c.t.Abort()
		return
	default:
		return
	}
	c.done = true
	closeExpired(c.t)
}

// process answers the complete requests at the start of data and returns
// how many bytes it used.
func (c *httpConn) process(data []byte) int {
	used := 0
	for !c.done && !c.sending {
		if c.discard > 0 {
			k := min(c.discard, int64(len(data)-used))
			c.discard -= k
			used += int(k)
			if c.discard > 0 {
				return used
			}
		}
		var req request
		n, err := parseRequest(data[used:], &req, c.s.head)
		if err == errIncomplete {
			return used
		}
		if se, ok := err.(*statusError); ok {
			c.refuse(se)
			return len(data)
		}
		used += n
		c.started = true
		if max := c.s.lim.MaxBodyBytes; max > 0 && req.contentLength > max {
			c.refuse(errBodyTooLarge, "content_length", req.contentLength, "max_body", max)
			return len(data)
		}
		c.discard = req.contentLength
		c.respond(&req)
	}
	return used
}

func (c *httpConn) respond(r *request) {
	head := string(r.method) == "HEAD"
	if !head && string(r.method) != "GET" {
		c.reply(r, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n")
		return
	}
	// The target stays bytes: comparing string(b) to a constant does not
	// allocate, so the greeting costs no allocation per request.
	target := r.target
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	hello := string(target) == "/" || string(target) == "/hello"
	switch {
	case hello && !head && r.keepAlive:
		c.t.Write(helloKeepAlive)
	case hello && !head:
		c.t.Write(helloClose)
		c.close()
	case hello:
		c.header(r, 200, "OK", "text/plain; charset=utf-8", int64(len(helloBody)), "")
		c.closeUnlessKeepAlive(r)
	case bytes.HasPrefix(target, []byte("/static/")) && c.s.root != nil:
		c.static(r, string(target[len("/static/"):]), head)
	default:
		c.reply(r, 404, "Not Found", "")
	}
}

// static sends a file from the root directory; staticRoot.open keeps the
// path, links included, below the root.
func (c *httpConn) static(r *request, rel string, head bool) {
	rel, err := url.PathUnescape(rel)
	if err != nil || strings.IndexByte(rel, 0) >= 0 {
		c.reply(r, 400, "Bad Request", "")
		return
	}
	f, st, err := c.s.root.open(rel)
	switch {
	case errors.Is(err, errEscapes):
		c.s.sw.log.event(c.s.sw.now, true, "serve http: path leaves --root through a symlink, refused (--follow-symlinks allows it)",
			peerOf(c.t), "path", rel)
		c.reply(r, 403, "Forbidden", "")
		return
	case errors.Is(err, fs.ErrPermission):
		c.reply(r, 403, "Forbidden", "")
		return
	case err != nil:
		c.reply(r, 404, "Not Found", "")
		return
	}
	ctype := mime.TypeByExtension(filepath.Ext(rel))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	c.header(r, 200, "OK", ctype, st.Size(), "")
	if head || st.Size() == 0 {
		f.Close()
		c.closeUnlessKeepAlive(r)
		return
	}
	// Hold further requests and input until the file is out. The file
	// goes in chunks, each of which the client must take within the send
	// timeout: a client that stops reading is closed, one that reads
	// slowly is not.
	c.sending = true
	c.t.PauseReading()
	keepAlive := r.keepAlive
	size := st.Size()
	c.sendTask, err = kernel.CreateTask(c.s.loop, func(co *kernel.Co) (struct{}, error) {
		defer f.Close()
		defer func() { c.sendTask = nil }()
		var err error
		for off := int64(0); off < size && err == nil && !c.done; {
			c.dl.arm(c.s.lim.SendTimeout)
			var n int64
			n, err = kernel.Sendfile(co, c.t, f, off, min(sendChunk, size-off), true)
			off += n
			if n == 0 && err == nil {
				err = io.ErrUnexpectedEOF // the file shrank under us
			}
		}
		c.sending = false
		switch {
		case err != nil || c.done:
			c.done = true
			c.t.Abort()
		case !keepAlive:
			c.close()
		default:
			c.t.ResumeReading()
			c.drainBuffered()
		}
		// A failed send is handled here (the connection is aborted);
		// returning it would only report it again as the task's.
		return struct{}{}, nil
	})
	if err != nil {
		f.Close()
		c.done = true
		c.t.Abort()
	}
}

// sendChunk is how much of a static file one Sendfile call sends; the send
// timeout is per chunk. 256 KiB takes 26 s at 10 KB/s, inside the default.
const sendChunk = 256 << 10

// header writes a response head.
func (c *httpConn) header(r *request, code int, reason, ctype string, length int64, extra string) {
	b := fmt.Appendf(c.scratch[:0], "HTTP/1.1 %d %s\r\nServer: loopkernel\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s",
		code, reason, ctype, length, extra)
	if !r.keepAlive {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	c.scratch = b
	c.t.Write(b)
}

// reply sends a short error or status page.
func (c *httpConn) reply(r *request, code int, reason, extra string) {
	body := fmt.Sprintf("%d %s\n", code, reason)
	c.header(r, code, reason, "text/plain; charset=utf-8", int64(len(body)), extra)
	if string(r.method) != "HEAD" {
		c.t.Write([]byte(body))
	}
	c.closeUnlessKeepAlive(r)
}

func (c *httpConn) closeUnlessKeepAlive(r *request) {
	if !r.keepAlive {
		c.close()
	}
}

// refuse answers a request the server will not serve (malformed, framed
// ambiguously, or over a limit), logs it with the peer's address, and ends
// the connection. The client may still be sending the request (a body
// announced too large, say), and closing a socket with unread input sends a
// reset that can destroy the answer before the client reads it; so, like
// Go's and nginx's servers, it shuts the write side after the answer and
// keeps discarding input until the client closes or lingerTimeout passes.
func (c *httpConn) refuse(se *statusError, args ...any) {
	c.s.sw.log.event(c.s.sw.now, true, "serve http: request refused", peerOf(c.t),
		append([]any{"status", se.code, "why", se.why}, args...)...)
	r := &request{method: []byte("GET")}
	body := fmt.Sprintf("%d %s\n", se.code, se.reason)
	c.header(r, se.code, se.reason, "text/plain; charset=utf-8", int64(len(body)), "")
	c.t.Write([]byte(body))
	c.done = true
	c.discard = 0
	c.buf = c.buf[:0]
	c.phase = phaseLinger
	c.dl.arm(lingerTimeout)
	if c.t.CanWriteEOF() {
		c.t.WriteEOF()
	} else {
		c.t.Close()
	}
}

func (c *httpConn) close() {
	c.done = true
	c.t.Close()
}
