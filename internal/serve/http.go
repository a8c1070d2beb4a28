package serve

import (
	"fmt"
	"mime"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/loopkernel/loopkernel/kernel"
)

// Routes of the HTTP server: "/" and "/hello" answer a fixed greeting;
// "/static/NAME" sends the file NAME below the root directory (when one is
// set) with kernel.Sendfile; everything else is 404. Only GET and HEAD are
// served; request bodies (Content-Length) are read and discarded; chunked
// request bodies are answered 501. Percent-encoding in paths is decoded.

const helloBody = "Hello, World!\n"

var (
	helloKeepAlive = []byte("HTTP/1.1 200 OK\r\nServer: loopkernel\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
		strconv.Itoa(len(helloBody)) + "\r\n\r\n" + helloBody)
	helloClose = []byte("HTTP/1.1 200 OK\r\nServer: loopkernel\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
		strconv.Itoa(len(helloBody)) + "\r\nConnection: close\r\n\r\n" + helloBody)
)

// httpConn is one HTTP connection. Requests are parsed straight from the
// transport's buffer when they arrive whole; a partial request, or requests
// pipelined behind a file being sent, are copied into buf.
type httpConn struct {
	loop    *kernel.Loop
	root    string
	t       kernel.Transport
	buf     []byte
	scratch []byte
	discard int64 // body bytes still to skip
	sending bool  // a static file is on its way; hold further requests
	done    bool  // the connection is closing; ignore further input
}

func (c *httpConn) ConnectionMade(t kernel.BaseTransport) { c.t = t.(kernel.Transport) }
func (c *httpConn) ConnectionLost(error)                  { c.done = true }
func (c *httpConn) EOFReceived() bool                     { return false }
func (c *httpConn) PauseWriting()                         { c.t.PauseReading() }
func (c *httpConn) ResumeWriting() {
	if !c.sending {
		c.t.ResumeReading()
	}
}

func (c *httpConn) DataReceived(b []byte) {
	if c.done {
		return
	}
	if len(c.buf) == 0 && !c.sending {
		n := c.process(b)
		if rest := b[n:]; len(rest) > 0 && !c.done {
			c.buf = append(c.buf, rest...)
		}
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
		n, err := parseRequest(data[used:], &req)
		if err == errIncomplete {
			return used
		}
		if se, ok := err.(*statusError); ok {
			c.fail(se.code, se.reason)
			return len(data)
		}
		used += n
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
	target, _, _ := strings.Cut(string(r.target), "?")
	switch {
	case (target == "/" || target == "/hello") && !head && r.keepAlive:
		c.t.Write(helloKeepAlive)
	case (target == "/" || target == "/hello") && !head:
		c.t.Write(helloClose)
		c.close()
	case target == "/" || target == "/hello":
		c.header(r, 200, "OK", "text/plain; charset=utf-8", int64(len(helloBody)), "")
	case strings.HasPrefix(target, "/static/") && c.root != "":
		c.static(r, strings.TrimPrefix(target, "/static/"), head)
	default:
		c.reply(r, 404, "Not Found", "")
	}
}

// static sends a file from the root directory. The path is unescaped and
// cleaned as an absolute path first, so ".." cannot leave the root.
func (c *httpConn) static(r *request, rel string, head bool) {
	rel, err := url.PathUnescape(rel)
	if err != nil || strings.IndexByte(rel, 0) >= 0 {
		c.reply(r, 400, "Bad Request", "")
		return
	}
	name := filepath.Join(c.root, filepath.FromSlash(path.Clean("/"+rel)))
	f, err := os.Open(name)
	if err != nil {
		c.reply(r, 404, "Not Found", "")
		return
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		c.reply(r, 404, "Not Found", "")
		return
	}
	ctype := mime.TypeByExtension(filepath.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	c.header(r, 200, "OK", ctype, st.Size(), "")
	if head || st.Size() == 0 {
		f.Close()
		return
	}
	// Hold further requests and input until the file is out.
	c.sending = true
	c.t.PauseReading()
	keepAlive := r.keepAlive
	_, err = kernel.CreateTask(c.loop, func(co *kernel.Co) (struct{}, error) {
		defer f.Close()
		_, err := kernel.Sendfile(co, c.t, f, 0, st.Size(), true)
		c.sending = false
		switch {
		case err != nil:
			c.done = true
			c.t.Abort()
		case !keepAlive:
			c.close()
		default:
			c.t.ResumeReading()
			c.drainBuffered()
		}
		return struct{}{}, err
	})
	if err != nil {
		f.Close()
		c.done = true
		c.t.Abort()
	}
}

func (c *httpConn) header(r *request, code int, reason, ctype string, length int64, extra string) {
	b := fmt.Appendf(c.scratch[:0], "HTTP/1.1 %d %s\r\nServer: loopkernel\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s",
		code, reason, ctype, length, extra)
	if !r.keepAlive {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	c.scratch = b
	c.t.Write(b)
	if !r.keepAlive && (string(r.method) == "HEAD" || length == 0) {
		c.close()
	}
}

// reply sends a short error or status page.
func (c *httpConn) reply(r *request, code int, reason, extra string) {
	body := fmt.Sprintf("%d %s\n", code, reason)
	c.header(r, code, reason, "text/plain; charset=utf-8", int64(len(body)), extra)
	if string(r.method) != "HEAD" {
		c.t.Write([]byte(body))
	}
	if !r.keepAlive {
		c.close()
	}
}

// fail answers a request the server could not parse and closes.
func (c *httpConn) fail(code int, reason string) {
	c.reply(&request{method: []byte("GET")}, code, reason, "")
}

func (c *httpConn) close() {
	c.done = true
	c.t.Close()
}
