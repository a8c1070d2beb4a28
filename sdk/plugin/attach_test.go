package plugin

import (
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseHandshakeLine(t *testing.T) {
	v := strconv.Itoa(controlVersion)
	addr, err := parseHandshakeLine("1|" + v + "|unix|/tmp/plugin-dir1/plugin2|grpc|\n")
	require.NoError(t, err)
	assert.Equal(t, "unix", addr.Network())
	assert.Equal(t, "/tmp/plugin-dir1/plugin2", addr.String())
	addr, err = parseHandshakeLine("1|" + v + "|tcp|127.0.0.1:1234|grpc")
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:1234", addr.String())

	for line, want := range map[string]string{
		"hello":                               "unrecognized go-plugin handshake line",
		"2|" + v + "|unix|/tmp/p|grpc":        "core protocol 2",
		"1|7|unix|/tmp/p|grpc":                "control protocol 7",
		"1|" + v + "|unix|/tmp/p|netrpc":      `protocol "netrpc"`,
		"1|" + v + "|unix|/tmp/p":             `protocol "netrpc"`, // go-plugin's default
		"1|" + v + "|udp|127.0.0.1:1|grpc":    `unknown network "udp"`,
		"1|" + v + "|tcp|no port here|grpc":   "missing port",
		"1|" + v + "|unix|/tmp/p|grpc|cert|1": "", // extra fields are ignored
	} {
		_, err := parseHandshakeLine(line)
		if want == "" {
			assert.NoError(t, err, line)
		} else {
			assert.ErrorContains(t, err, want, line)
		}
	}
}

// The plugin's JSON log lines keep their level, message and pairs; other
// lines arrive at debug level (at error level from a panic on), a line
// longer than the buffer in pieces.
func TestForwardLog(t *testing.T) {
	var out strings.Builder
	var mu sync.Mutex
	l := hclog.New(&hclog.LoggerOptions{Name: "host", Level: hclog.Trace, Output: lockedWriter{&mu, &out}, DisableTime: true})
	long := strings.Repeat("x", 70<<10)
	in := `{"@level":"warn","@message":"disk full","@timestamp":"2026-01-01T00:00:00Z","b":2,"a":"one"}` + "\n" +
		"plain\n" + `{"@message":"no level"}` + "\n" + long + "\n" + `{"@level":"error","@message":"json"}` + "\n" +
		"panic: oops\n\tstack\n" + `{"@level":"info","@message":"last, unterminated"}`
	forwardLog(l.Named("p"), strings.NewReader(in))
	got := out.String()
	assert.Contains(t, got, "[WARN]  host.p: disk full: a=one b=2\n")
	assert.Contains(t, got, "[DEBUG] host.p: plain\n")
	assert.Contains(t, got, "[DEBUG] host.p: {\"@message\":\"no level\"}\n")
	assert.Contains(t, got, "[ERROR] host.p: json\n")
	assert.Contains(t, got, "[ERROR] host.p: panic: oops\n")
	assert.Contains(t, got, "[ERROR] host.p: \tstack\n", "the rest of a panic's lines at error level")
	assert.Contains(t, got, "[INFO]  host.p: last, unterminated\n")
	assert.NotContains(t, got, "@timestamp")
	assert.Equal(t, 70<<10, strings.Count(got, "x"), "a long line arrives whole, in pieces")

	out.Reset()
	l.SetLevel(hclog.Off)
	forwardLog(l, strings.NewReader(in))
	assert.Empty(t, out.String())
}
