package serve

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseRequest(t *testing.T) {
	var r request
	in := "GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET"
	n, err := parseRequest([]byte(in), &r)
	require.NoError(t, err)
	require.Equal(t, strings.Index(in, "abc"), n)
	require.Equal(t, "GET", string(r.method))
	require.Equal(t, "/hello", string(r.target))
	require.True(t, r.keepAlive)
	require.EqualValues(t, 3, r.contentLength)

	_, err = parseRequest([]byte("GET / HTTP/1.0\r\n\r\n"), &r)
	require.NoError(t, err)
	require.False(t, r.keepAlive, "HTTP/1.0 closes by default")
	_, err = parseRequest([]byte("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), &r)
	require.NoError(t, err)
	require.True(t, r.keepAlive)
	_, err = parseRequest([]byte("GET / HTTP/1.1\r\nconnection: foo, close\r\n\r\n"), &r)
	require.NoError(t, err)
	require.False(t, r.keepAlive)
}

func TestParseRequestErrors(t *testing.T) {
	var r request
	cases := map[string]error{
		"GET / HTTP/1.1\r\nHost: x\r\n":                                    errIncomplete,
		"GET / HTTP/1.1\r\n\r\n"[:5]:                                       errIncomplete,
		"GET / HTTP/2.0\r\n\r\n":                                           errVersion,
		"GET / FTP/1.0\r\n\r\n":                                            errBadRequest,
		"GET\r\n\r\n":                                                      errBadRequest,
		"G(T / HTTP/1.1\r\n\r\n":                                           errBadRequest,
		"GET / HTTP/1.1\r\nbad header\r\n\r\n":                             errBadRequest,
		"GET / HTTP/1.1\r\n folded: x\r\n\r\n":                             errBadRequest,
		"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n":                     errBadRequest,
		"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n": errBadRequest,
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n":            errNotImplemented,
		"GET /" + strings.Repeat("a", maxHead) + " HTTP/1.1\r\n":           errHeadTooLarge,
	}
	for in, want := range cases {
		_, err := parseRequest([]byte(in), &r)
		require.True(t, errors.Is(err, want), "%q: got %v, want %v", in, err, want)
	}
}

func TestParseRequestAllocatesNothing(t *testing.T) {
	in := []byte("GET /hello HTTP/1.1\r\nHost: localhost\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n")
	var r request
	allocs := testing.AllocsPerRun(100, func() { parseRequest(in, &r) })
	require.Zero(t, allocs)
}

// FuzzParseRequest: whatever a peer sends, the parser returns a head length
// inside the buffer or an error, and never panics.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("POST /x HTTP/1.0\r\nContent-Length: 10\r\nConnection: keep-alive\r\n\r\n0123456789"))
	f.Add([]byte("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Add([]byte("\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r request
		n, err := parseRequest(b, &r)
		if err != nil {
			if n != 0 {
				t.Fatalf("error %v with length %d", err, n)
			}
			return
		}
		if n < 4 || n > len(b) || n > maxHead {
			t.Fatalf("head length %d outside buffer of %d", n, len(b))
		}
		if r.contentLength < 0 {
			t.Fatalf("negative content length %d", r.contentLength)
		}
	})
}
