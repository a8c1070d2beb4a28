package serve

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var testHead = headLimits{maxBytes: defaultMaxHeaderBytes, maxFields: defaultMaxHeaders}

func TestParseRequest(t *testing.T) {
	var r request
	in := "GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET"
	n, err := parseRequest([]byte(in), &r, testHead)
	require.NoError(t, err)
	require.Equal(t, strings.Index(in, "abc"), n)
	require.Equal(t, "GET", string(r.method))
	require.Equal(t, "/hello", string(r.target))
	require.True(t, r.keepAlive)
	require.EqualValues(t, 3, r.contentLength)

	_, err = parseRequest([]byte("GET / HTTP/1.0\r\n\r\n"), &r, testHead)
	require.NoError(t, err, "HTTP/1.0 needs no Host")
	require.False(t, r.keepAlive, "HTTP/1.0 closes by default")
	_, err = parseRequest([]byte("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), &r, testHead)
	require.NoError(t, err)
	require.True(t, r.keepAlive)
	_, err = parseRequest([]byte("GET / HTTP/1.1\r\nHost: x\r\nconnection: foo, close\r\n\r\n"), &r, testHead)
	require.NoError(t, err)
	require.False(t, r.keepAlive)

	// RFC 9110 §8.6: identical repeated lengths, in one line or several,
	// are one length.
	for _, in := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 7, 7\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\ncontent-length: 007\r\n\r\n",
	} {
		_, err = parseRequest([]byte(in), &r, testHead)
		require.NoError(t, err, "%q", in)
		require.EqualValues(t, 7, r.contentLength, "%q", in)
	}
	// 18 digits fit an int64: the parser accepts them, the body limit
	// refuses them (413) in the connection.
	_, err = parseRequest([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999999999\r\n\r\n"), &r, testHead)
	require.NoError(t, err)
	require.EqualValues(t, int64(999999999999999999), r.contentLength)

	// Zero limits are no limits.
	many := "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: "+strings.Repeat("a", 100)+"\r\n", 500) + "\r\n"
	_, err = parseRequest([]byte(many), &r, headLimits{})
	require.NoError(t, err)
}

func TestParseRequestErrors(t *testing.T) {
	var r request
	const h = "Host: x\r\n"
	cases := map[string]error{
		"GET / HTTP/1.1\r\nHost: x\r\n":                errIncomplete,
		"GET / HTTP/1.1\r\n\r\n"[:5]:                   errIncomplete,
		"GET / HTTP/2.0\r\n\r\n":                       errVersion,
		"GET / FTP/1.0\r\n\r\n":                        errBadRequest,
		"GET\r\n\r\n":                                  errBadRequest,
		"G(T / HTTP/1.1\r\n\r\n":                       errBadRequest,
		"GET / HTTP/1.1\r\nbad header\r\n\r\n":         errBadRequest,
		"GET / HTTP/1.1\r\n folded: x\r\n\r\n":         errBadRequest,
		"GET / HTTP/1.1\r\n\r\n":                       errHost,
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n": errHost,
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\nTransfer-Encoding: chunked\r\n\r\n":                     errBareLF,
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n":                                              errBareLF,
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n":                                            errBareLF,
		"GET /\n HTTP/1.1\r\nHost: x\r\n\r\n":                                                       errBareLF,
		"GET / HTTP/1.1\r\n" + h + "Content-Length: -1\r\n\r\n":                                     errBadLength,
		"GET / HTTP/1.1\r\n" + h + "Content-Length: +1\r\n\r\n":                                     errBadLength,
		"GET / HTTP/1.1\r\n" + h + "Content-Length: 1 2\r\n\r\n":                                    errBadLength,
		"GET / HTTP/1.1\r\n" + h + "Content-Length: \r\n\r\n":                                       errBadLength,
		"GET / HTTP/1.1\r\n" + h + "Content-Length: 1,\r\n\r\n":                                     errBadLength,
		"GET / HTTP/1.1\r\n" + h + "Content-Length: 0x10\r\n\r\n":                                   errBadLength,
		"GET / HTTP/1.1\r\n" + h + "Content-Length: 1\r\nContent-Length: 2\r\n\r\n":                 errLengthConflict,
		"GET / HTTP/1.1\r\n" + h + "Content-Length: 1, 2\r\n\r\n":                                   errLengthConflict,
		"GET / HTTP/1.1\r\n" + h + "Content-Length: 99999999999999999999\r\n\r\n":                   errLengthTooLarge,
		"GET / HTTP/1.1\r\n" + h + "Content-Length: 9999999999999999999\r\n\r\n":                    errLengthTooLarge,
		"GET / HTTP/1.1\r\n" + h + "Content-Length: 99999999999999999999x\r\n\r\n":                  errBadLength,
		"POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n":                            errChunked,
		"POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n": errChunked,
		"POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked, gzip\r\n\r\n":                      errTENotChunked,
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n":                                     errTEInHTTP10,
		"POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n":       errTEWithLength,
		"POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n":       errTEWithLength,
		"GET /" + strings.Repeat("a", defaultMaxHeaderBytes) + " HTTP/1.1\r\n":                      errHeadTooLarge,
		"GET / HTTP/1.1\r\n" + strings.Repeat("X-A: b\r\n", defaultMaxHeaders) + h + "\r\n":         errTooManyFields,
	}
	for in, want := range cases {
		_, err := parseRequest([]byte(in), &r, testHead)
		require.True(t, errors.Is(err, want), "%q: got %v, want %v", in, err, want)
	}
}

func TestParseRequestAllocatesNothing(t *testing.T) {
	in := []byte("GET /hello HTTP/1.1\r\nHost: localhost\r\nUser-Agent: x\r\nAccept: */*\r\nContent-Length: 0, 0\r\n\r\n")
	var r request
	allocs := testing.AllocsPerRun(100, func() { parseRequest(in, &r, testHead) })
	require.Zero(t, allocs)
}

// FuzzParseRequest: whatever a peer sends, under whatever limits, the
// parser returns a head length inside the buffer and the limits or an
// error, never panics, and never accepts an ambiguous framing.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), uint16(0), uint8(0))
	f.Add([]byte("POST /x HTTP/1.0\r\nContent-Length: 10\r\nConnection: keep-alive\r\n\r\n0123456789"), uint16(64), uint8(2))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"), uint16(1000), uint8(5))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n"), uint16(0), uint8(0))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n"), uint16(0), uint8(0))
	f.Add([]byte("\r\n\r\n"), uint16(0), uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, maxBytes uint16, maxFields uint8) {
		lim := headLimits{maxBytes: int(maxBytes), maxFields: int(maxFields)}
		var r request
		n, err := parseRequest(b, &r, lim)
		if err != nil {
			if n != 0 {
				t.Fatalf("error %v with length %d", err, n)
			}
			var se *statusError
			if err != errIncomplete && !errors.As(err, &se) {
				t.Fatalf("error %v is neither incomplete nor a status", err)
			}
			return
		}
		if n < 4 || n > len(b) || (lim.maxBytes > 0 && n > lim.maxBytes) {
			t.Fatalf("head length %d outside buffer of %d or limit %d", n, len(b), lim.maxBytes)
		}
		if r.contentLength < 0 {
			t.Fatalf("negative content length %d", r.contentLength)
		}
		head := strings.ToLower(string(b[:n]))
		if strings.Contains(head, "\ntransfer-encoding:") {
			t.Fatalf("accepted a request with Transfer-Encoding: %q", b[:n])
		}
		if lim.maxFields > 0 && strings.Count(head, "\r\n")-2 > lim.maxFields {
			t.Fatalf("accepted %d fields over the limit %d", strings.Count(head, "\r\n")-2, lim.maxFields)
		}
	})
}
