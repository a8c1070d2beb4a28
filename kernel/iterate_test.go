package kernel_test

import (
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/selector"
)

// The loop runs a whole batch of callbacks in one frame under one recover
// (kernel/loop.go, iterate). These tests pin what that must not change: a
// panicking callback is reported and the rest of its batch runs in order in
// the same iteration, and what callbacks schedule still waits for the next
// iteration.

func newIterLoop(t *testing.T) *kernel.Loop {
	t.Helper()
	sel, err := selector.NewEpoll()
	if err != nil {
		t.Fatalf("epoll: %v", err)
	}
	l := kernel.New(sel, kernel.WithLogger(hclog.NewNullLogger()))
	t.Cleanup(func() { l.Close() })
	return l
}

func TestIteratePanicsResumeTheBatch(t *testing.T) {
	l := newIterLoop(t)
	var got []string
	var reported []string
	l.SetExceptionHandler(func(_ *kernel.Loop, ctx kernel.ErrorContext) {
		reported = append(reported, ctx.Err.Error())
	})
	iter := 0
	mark := func(s string) func() {
		return func() { got = append(got, s) }
	}
	l.CallSoon(func() {
		got = append(got, "a")
		// Scheduled during the batch: must run in the next iteration,
		// after the whole batch, panics or not.
		l.CallSoon(func() { got = append(got, "next") })
	})
	l.CallSoon(func() { panic("p1") })
	l.CallSoon(mark("b"))
	l.CallSoon(func() { panic("p2") })
	l.CallSoon(func() { panic("p3") })
	l.CallSoon(mark("c"))
	l.CallSoon(func() { iter++; l.Stop() })
	if err := l.RunForever(); err != nil {
		t.Fatalf("run forever: %v", err)
	}
	want := []string{"a", "b", "c"}
	if len(got) != len(want) {
		t.Fatalf("first run ran %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("first run ran %v, want %v", got, want)
		}
	}
	if len(reported) != 3 || reported[0] != "panic: p1" || reported[2] != "panic: p3" {
		t.Fatalf("reported %q, want the three panics in order", reported)
	}
	if iter != 1 {
		t.Fatalf("stop callback ran %d times, want 1", iter)
	}
	// The callback scheduled during the batch is still pending: the next
	// run (one iteration, because of Stop) runs it.
	l.Stop()
	if err := l.RunForever(); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if len(got) != 4 || got[3] != "next" {
		t.Fatalf("second run ran %v, want the callback scheduled during the batch", got)
	}
}

// A handle whose callback panicked is recycled like any other: scheduling
// goes on allocating nothing and stale Handles stay inert.
func TestIteratePanickedHandleGoesStale(t *testing.T) {
	l := newIterLoop(t)
	l.SetExceptionHandler(func(*kernel.Loop, kernel.ErrorContext) {})
	h, _ := l.CallSoon(func() { panic("boom") })
	l.CallSoon(l.Stop)
	if err := l.RunForever(); err != nil {
		t.Fatalf("run forever: %v", err)
	}
	if h.Cancelled() {
		t.Fatal("a callback that ran (and panicked) reports cancelled")
	}
	ran := false
	h2, _ := l.CallSoon(func() { ran = true })
	h.Cancel() // stale: must not cancel the recycled handle's new callback
	l.CallSoon(l.Stop)
	if err := l.RunForever(); err != nil {
		t.Fatalf("run forever: %v", err)
	}
	if !ran || h2.Cancelled() {
		t.Fatal("cancelling a stale Handle cancelled the callback that reused its record")
	}
}

// Stop before RunForever still runs exactly one batch.
func TestIterateStopBeforeRunRunsOneBatch(t *testing.T) {
	l := newIterLoop(t)
	n := 0
	var again func()
	again = func() { n++; l.CallSoon(again) }
	l.CallSoon(again)
	l.Stop()
	if err := l.RunForever(); err != nil {
		t.Fatalf("run forever: %v", err)
	}
	if n != 1 {
		t.Fatalf("ran %d iterations' worth, want 1", n)
	}
}
