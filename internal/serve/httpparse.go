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
// minimal server does not support, and every message whose framing is
// ambiguous (the request-smuggling cases of RFC 9112 §6.3 and §11.2).

// Defaults of the head limits (see Limits).
const (
	defaultMaxHeaderBytes = 16 * 1024
	defaultMaxHeaders     = 100
)

// errIncomplete: the head is not all there yet; read more.
var errIncomplete = errors.New("incomplete request head")

// statusError is a request the server answers with an error status and then
// closes the connection. why names the rule that refused it, for the log.
type statusError struct {
	code   int
	reason string
	why    string
}

func (e *statusError) Error() string { return fmt.Sprintf("%d %s: %s", e.code, e.reason, e.why) }

var (
	errBadRequest     = &statusError{400, "Bad Request", "malformed request"}
	errBareLF         = &statusError{400, "Bad Request", "bare CR, LF or NUL in the request head"}
	errBadLength      = &statusError{400, "Bad Request", "invalid Content-Length"}
	errLengthConflict = &statusError{400, "Bad Request", "conflicting Content-Length values"}
	errTEWithLength   = &statusError{400, "Bad Request", "Transfer-Encoding with Content-Length"}
	errTEInHTTP10     = &statusError{400, "Bad Request", "Transfer-Encoding in an HTTP/1.0 request"}
	errTENotChunked   = &statusError{400, "Bad Request", "Transfer-Encoding not ending in chunked"}
	errHost           = &statusError{400, "Bad Request", "HTTP/1.1 request without exactly one Host"}
	errHeadTooLarge   = &statusError{431, "Request Header Fields Too Large", "request head over the size limit"}
	errTooManyFields  = &statusError{431, "Request Header Fields Too Large", "more header fields than the limit"}
	errLengthTooLarge = &statusError{413, "Content Too Large", "Content-Length beyond any representable size"}
	errBodyTooLarge   = &statusError{413, "Content Too Large", "Content-Length over the body limit"}
	errChunked        = &statusError{501, "Not Implemented", "chunked request bodies"}
	errVersion        = &statusError{505, "HTTP Version Not Supported", "HTTP version other than 1.0 and 1.1"}
)

// headLimits bound a request head: its size in bytes (through the blank
// line) and its number of header fields. Zero means no limit.
type headLimits struct {
	maxBytes  int
	maxFields int
}

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
func parseRequest(b []byte, r *request, lim headLimits) (int, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if lim.maxBytes > 0 && len(b) > lim.maxBytes {
			return 0, errHeadTooLarge
		}
		return 0, errIncomplete
	}
	if lim.maxBytes > 0 && end+4 > lim.maxBytes {
		return 0, errHeadTooLarge
	}
	head := b[:end+2] // every line, each ending in CRLF
	// A bare CR or LF, or a NUL, anywhere in the head is refused (RFC 9110
	// §5.5, RFC 9112 §2.2): a server or proxy that took a bare LF for a
	// line end would see header fields this parser does not, which is how
	// requests are smuggled past one of them.
	if bytes.IndexByte(head, 0) >= 0 || bytes.Count(head, []byte("\n")) != bytes.Count(head, []byte("\r\n")) ||
		bytes.Count(head, []byte("\r")) != bytes.Count(head, []byte("\r\n")) {
		return 0, errBareLF
	}
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
	var (
		seenLength bool
		te         []byte // the last Transfer-Encoding line's value
		seenTE     bool
		hosts      int
		fields     int
	)
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if fields++; lim.maxFields > 0 && fields > lim.maxFields {
			return 0, errTooManyFields
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return 0, errBadRequest // also rejects obsolete line folding
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		switch {
		case asciiEqualFold(name, "content-length"):
			n, err := parseLength(value)
			if err != nil {
				return 0, err
			}
			if seenLength && n != r.contentLength {
				return 0, errLengthConflict
			}
			r.contentLength, seenLength = n, true
		case asciiEqualFold(name, "transfer-encoding"):
			te, seenTE = value, true
		case asciiEqualFold(name, "host"):
			hosts++
		case asciiEqualFold(name, "connection"):
			if hasToken(value, "close") {
				r.keepAlive = false
			} else if hasToken(value, "keep-alive") {
				r.keepAlive = true
			}
		}
	}
	if r.minor == 1 && hosts != 1 {
		return 0, errHost // RFC 9112 §3.2
	}
	if seenTE {
		// RFC 9112 §6.1 and §6.3: Transfer-Encoding with Content-Length is
		// a smuggling attempt or a broken intermediary; in HTTP/1.0 the
		// framing is faulty; a coding list that does not end in chunked
		// cannot be delimited. All three are refused before any body byte
		// is read. A well-framed chunked body is merely unsupported.
		switch {
		case seenLength:
			return 0, errTEWithLength
		case r.minor == 0:
			return 0, errTEInHTTP10
		case !lastTokenIs(te, "chunked"):
			return 0, errTENotChunked
		}
		return 0, errChunked
	}
	return end + 4, nil
}

// parseLength parses a Content-Length value: 1*DIGIT, or a comma-separated
// list of identical such values (RFC 9110 §8.6 lets a recipient accept that
// as one). A value too long for an int64 is valid HTTP but can never be
// honoured, so it is answered 413, not 400.
func parseLength(v []byte) (int64, error) {
	n := int64(-1)
	for more := true; more; {
		var item []byte
		item, v, more = bytes.Cut(v, []byte(","))
		item = bytes.Trim(item, " \t")
		if len(item) == 0 {
			return 0, errBadLength
		}
		var m int64
		for i, c := range item {
			if c < '0' || c > '9' {
				return 0, errBadLength
			}
			if m > (1<<63-1-9)/10 {
				// Still check the rest are digits: "9999…x" is 400.
				for _, c := range item[i:] {
					if c < '0' || c > '9' {
						return 0, errBadLength
					}
				}
				return 0, errLengthTooLarge
			}
			m = m*10 + int64(c-'0')
		}
		if n >= 0 && m != n {
			return 0, errLengthConflict
		}
		n = m
	}
	if n < 0 {
		return 0, errBadLength
	}
	return n, nil
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

// lastTokenIs reports whether the last item of a comma-separated header
// value is tok (parameters after ';' are not allowed on chunked).
func lastTokenIs(v []byte, tok string) bool {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return asciiEqualFold(bytes.Trim(v, " \t"), tok)
}
