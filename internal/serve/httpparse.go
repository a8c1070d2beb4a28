package serve

import (
	"bytes"
	"errors"
	"fmt"
)

// The HTTP/1.1 request-head parser of `loopkernel serve http`. It parses in
// place, keeps slices into the caller's buffer and allocates nothing, since
// it runs once per request on the loop goroutine. It accepts what RFC 9112
// requires of a server and rejects, with the status to answer, what this
// minimal server does not support.

// maxHead bounds a request head; a longer one is answered 431.
const maxHead = 16 * 1024

// errIncomplete: the head is not all there yet; read more.
var errIncomplete = errors.New("incomplete request head")

// statusError is a request the server answers with an error status and then
// closes the connection.
type statusError struct {
	code   int
	reason string
}

func (e *statusError) Error() string { return fmt.Sprintf("%d %s", e.code, e.reason) }

var (
	errBadRequest     = &statusError{400, "Bad Request"}
	errHeadTooLarge   = &statusError{431, "Request Header Fields Too Large"}
	errNotImplemented = &statusError{501, "Not Implemented"}
	errVersion        = &statusError{505, "HTTP Version Not Supported"}
)

// request is one parsed request head; method and target alias the buffer.
type request struct {
	method        []byte
	target        []byte
	minor         int // HTTP/1.minor
	keepAlive     bool
	contentLength int64
}

// parseRequest parses the request head at the start of b into r and returns
// its length, errIncomplete if b holds only part of it, or a *statusError.
func parseRequest(b []byte, r *request) (int, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > maxHead {
			return 0, errHeadTooLarge
		}
		return 0, errIncomplete
	}
	if end+4 > maxHead {
		return 0, errHeadTooLarge
	}
	head := b[:end+2] // every line, each ending in CRLF
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return 0, errBadRequest
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		return 0, errBadRequest
	}
	r.method = line[:sp1]
	r.target = line[sp1+1 : sp1+1+sp2]
	version := line[sp1+1+sp2+1:]
	if !isToken(r.method) || len(r.target) == 0 || bytes.ContainsAny(r.target, " \t") {
		return 0, errBadRequest
	}
	switch {
	case bytes.Equal(version, []byte("HTTP/1.1")):
		r.minor, r.keepAlive = 1, true
	case bytes.Equal(version, []byte("HTTP/1.0")):
		r.minor, r.keepAlive = 0, false
	case bytes.HasPrefix(version, []byte("HTTP/")):
		return 0, errVersion
	default:
		return 0, errBadRequest
	}
	r.contentLength = 0
	seenLength := false
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return 0, errBadRequest // also rejects obsolete line folding
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		switch {
		case asciiEqualFold(name, "content-length"):
			n, ok := parseLength(value)
			if !ok || (seenLength && n != r.contentLength) {
				return 0, errBadRequest
			}
			r.contentLength, seenLength = n, true
		case asciiEqualFold(name, "transfer-encoding"):
			return 0, errNotImplemented
		case asciiEqualFold(name, "connection"):
			if hasToken(value, "close") {
				r.keepAlive = false
			} else if hasToken(value, "keep-alive") {
				r.keepAlive = true
			}
		}
	}
	return end + 4, nil
}

func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// isToken reports whether b is a non-empty RFC 9110 token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`"(),/:;<=>?@[\]{}`), c) >= 0 {
			return false
		}
	}
	return true
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// hasToken reports whether a comma-separated header value lists tok.
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var item []byte
		item, v, _ = bytes.Cut(v, []byte(","))
		if asciiEqualFold(bytes.Trim(item, " \t"), tok) {
			return true
		}
	}
	return false
}
