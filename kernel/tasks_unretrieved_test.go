package kernel_test

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
)

// spawnFailing creates a task that fails with err and keeps no reference to
// it, so that only the collector can notice its error was never read.
//
//go:noinline
func spawnFailing(t *testing.T, l *kernel.Loop, err error) {
	if _, e := kernel.CreateTask(l, func(co *kernel.Co) (int, error) { return 0, err }); e != nil {
		t.Fatal(e)
	}
}

// collectReports runs l in short turns, collecting garbage between them,
// until want reports arrived or the deadline passed.
func collectReports(t *testing.T, l *kernel.Loop, got chan kernel.ErrorContext, want int, wait time.Duration) []kernel.ErrorContext {
	var out []kernel.ErrorContext
	deadline := time.Now().Add(wait)
	for len(out) < want && time.Now().Before(deadline) {
		runtime.GC()
		if _, err := l.CallLater(5*time.Millisecond, l.Stop); err != nil {
			t.Fatal(err)
		}
		if err := l.RunForever(); err != nil {
			t.Fatal(err)
		}
		for len(got) > 0 {
			out = append(out, <-got)
		}
	}
	return out
}

// A failed task that is dropped unread is reported once the collector takes
// it, through the loop's exception handler, on the loop goroutine, before
// the loop is closed; one whose error was read is not.
func TestUnretrievedReportedWhenCollected(t *testing.T) {
	l := testkit.NewLoop(t, "epoll")
	got := make(chan kernel.ErrorContext, 8)
	l.SetExceptionHandler(func(_ *kernel.Loop, c kernel.ErrorContext) { got <- c })
	boom := errors.New("dropped unread")
	spawnFailing(t, l, boom)
	read, err := kernel.CreateTask(l, func(co *kernel.Co) (int, error) { return 0, errors.New("read") })
	if err != nil {
		t.Fatal(err)
	}
	if err := l.RunUntilComplete(read); err == nil {
		t.Fatal("the failing task did not fail")
	}
	read = nil
	reports := collectReports(t, l, got, 1, 5*time.Second)
	if len(reports) != 1 {
		t.Fatalf("got %d reports after collection, want 1: %v", len(reports), reports)
	}
	if reports[0].Message != "Task exception was never retrieved" || !errors.Is(reports[0].Err, boom) {
		t.Errorf("report = %q %v", reports[0].Message, reports[0].Err)
	}
	// Nothing more, not even at Close.
	if extra := collectReports(t, l, got, 1, 50*time.Millisecond); len(extra) != 0 {
		t.Errorf("unexpected reports: %v", extra)
	}
	l.Close()
	if len(got) != 0 {
		t.Errorf("Close reported a task already reported or read: %v", <-got)
	}
}
