package conformance

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/loopkernel/loopkernel/sdk"
)

// Status is how a case ended.
type Status string

const (
	// Running is only ever seen by Options.Progress, when a case starts.
	Running Status = "run"
	Pass    Status = "pass"
	Skip    Status = "skip"
	Fail    Status = "fail"
	// Hang: the case did not end within Options.Timeout. Its goroutine is
	// abandoned (Go cannot kill it) and the run moves on.
	Hang Status = "hang"
)

// DefaultTimeout is the per-case limit when Options.Timeout is zero. Cases
// take milliseconds when the selector works; the limit only has to be long
// enough not to misfire on a loaded two-core machine.
const DefaultTimeout = 30 * time.Second

// Options tune Run. The zero value runs every case with DefaultTimeout.
type Options struct {
	// Timeout is the per-case limit; a case over it is reported as Hang.
	Timeout time.Duration
	// Match selects cases by name; nil runs them all.
	Match func(name string) bool
	// Subject names what is being certified in the results, e.g.
	// "epoll (out-of-process)". Empty means the selector's Capabilities().Name.
	Subject string
	// Progress, if set, is called from Run's goroutine when each case starts
	// (Status Running) and when it ends.
	Progress func(Result)
}

// Result is the outcome of one case.
type Result struct {
	Suite   string `json:"suite"`
	Subject string `json:"subject"`
	Case    string `json:"case"`
	Status  Status `json:"status"`
	// Duration is wall time including cleanups; for Hang it is the limit.
	Duration time.Duration `json:"duration_ns"`
	// Message holds the failures, one per line group, each naming its rule.
	Message string `json:"message,omitempty"`
	// SkipReason names the missing capability (or other reason) of a Skip.
	SkipReason string `json:"skip_reason,omitempty"`
	// Log is what the case logged with Logf.
	Log string `json:"log,omitempty"`
}

// Run runs the cases of s against the selectors f builds, one at a time, and
// returns a result per selected case in suite order. It builds one selector
// first to read its capabilities; if that fails there is nothing to certify
// and Run returns the error. If ctx is cancelled Run stops and returns the
// results so far with ctx's error.
func Run(ctx context.Context, s Suite, f Factory, opts Options) ([]Result, error) {
	rn, err := newRunner(f, opts)
	if err != nil {
		return nil, err
	}
	var results []Result
	for _, cs := range s.Cases {
		if opts.Match != nil && !opts.Match(cs.Name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return results, err
		}
		if opts.Progress != nil {
			opts.Progress(Result{Suite: s.Name, Subject: rn.subject, Case: cs.Name, Status: Running})
		}
		r := rn.run(ctx, s.Name, cs)
		if opts.Progress != nil {
			opts.Progress(r)
		}
		results = append(results, r)
	}
	return results, ctx.Err()
}

// runner holds what every case of a run shares: the factory and the
// capabilities read once from a probe selector (a factory may start a
// process, so it is not called just to ask again).
type runner struct {
	f       Factory
	caps    sdk.Capabilities
	subject string
	timeout time.Duration
}

func newRunner(f Factory, opts Options) (*runner, error) {
	probe, err := f()
	if err != nil {
		return nil, fmt.Errorf("conformance: build selector to read capabilities: %w", err)
	}
	caps := probe.Capabilities()
	if err := probe.Close(); err != nil {
		return nil, fmt.Errorf("conformance: close probe selector %q: %w", caps.Name, err)
	}
	rn := &runner{f: f, caps: caps, subject: opts.Subject, timeout: opts.Timeout}
	if rn.subject == "" {
		rn.subject = caps.Name
	}
	if rn.timeout <= 0 {
		rn.timeout = DefaultTimeout
	}
	return rn, nil
}

func (rn *runner) run(ctx context.Context, suite string, cs Case) Result {
	r := runCase(ctx, cs, rn.f, rn.caps, rn.timeout)
	r.Suite, r.Subject, r.Case = suite, rn.subject, cs.Name
	return r
}

// runCase runs one case body on its own goroutine, so that FailNow and Skip
// can end it with runtime.Goexit and a case that never returns can be
// abandoned.
func runCase(ctx context.Context, cs Case, f Factory, caps sdk.Capabilities, timeout time.Duration) Result {
	start := time.Now()
	if why := missing(caps, cs.Needs); why != "" {
		return Result{Status: Skip, SkipReason: why}
	}
	// Taken before the clock starts, so waiting for an Alone case does not
	// count against a case's time. A hung case keeps its hold only until
	// it is reported: holding it for ever would stall every later run.
	defer exclusive(cs.Alone)()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := newC(cctx, cs.Name, f, caps)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c.closeOwned()
		defer c.runCleanups()
		defer func() {
			if r := recover(); r != nil {
				c.Errorf("panic: %v\n%s", r, debug.Stack())
			}
		}()
		cs.Run(c)
	}()
	select {
	case <-done:
	case <-cctx.Done():
		// The case may still finish during cleanup; prefer its own verdict.
		select {
		case <-done:
		default:
			r := Result{Status: Hang, Duration: time.Since(start)}
			c.mu.Lock()
			r.Message = fmt.Sprintf("case did not end within %v (%v)", timeout, context.Cause(cctx))
			if len(c.msgs) > 0 {
				r.Message += "\n" + strings.Join(c.msgs, "\n")
			}
			r.Log = strings.Join(c.logs, "\n")
			c.mu.Unlock()
			return r
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r := Result{Duration: time.Since(start), Log: strings.Join(c.logs, "\n")}
	switch {
	case c.failed:
		r.Status = Fail
		r.Message = strings.Join(c.msgs, "\n")
	case c.skipped:
		r.Status = Skip
		r.SkipReason = c.skipReason
	default:
		r.Status = Pass
	}
	return r
}

// alone is held for reading by every running case and for writing by a
// Case.Alone one, so that runs sharing a process (parallel tests binding
// suites) never overlap an Alone case.
var alone sync.RWMutex

// exclusive takes alone as cs needs it and returns its release.
func exclusive(isAlone bool) (release func()) {
	if isAlone {
		alone.Lock()
		return alone.Unlock
	}
	alone.RLock()
	return alone.RUnlock
}
