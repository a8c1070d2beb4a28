package testkit

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// Logger is an hclog logger that writes to t's log while t runs. Goroutines
// that outlive a test (go-plugin's stdio reader logs "received EOF" after a
// plugin was killed) must not call t.Log once it has finished: that is a
// panic or, under -race, a reported race in package testing. So the writer
// switches to stderr (dropping debug lines) when t's cleanups run, under a
// lock that orders every t.Log before the switch.
func Logger(t testing.TB, name string, level hclog.Level) hclog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.finish)
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: level, Output: w})
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		// A late debug line (go-plugin's stdio reader saying goodbye) is
		// noise once the test is over; anything louder still shows.
		if bytes.Contains(p, []byte("[DEBUG]")) || bytes.Contains(p, []byte("[TRACE]")) {
			return len(p), nil
		}
		return os.Stderr.Write(p)
	}
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (w *testWriter) finish() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// LogWriter is an io.Writer into t's log (a child process's stderr, say),
// safe after t has finished in the same way as Logger; prefix starts
// every write.
func LogWriter(t testing.TB, prefix string) *LogSink {
	w := &LogSink{w: testWriter{t: t}, prefix: prefix + ": "}
	t.Cleanup(w.w.finish)
	return w
}

// LogSink is LogWriter's writer.
type LogSink struct {
	w      testWriter
	prefix string
}

func (s *LogSink) Write(p []byte) (int, error) {
	if _, err := s.w.Write(append([]byte(s.prefix), p...)); err != nil {
		return 0, err
	}
	return len(p), nil
}
