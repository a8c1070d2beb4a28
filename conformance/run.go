package conformance

import (
	"cmp"
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	// Hang: the case did not end within Options.Timeout, or the contract
	// checker found it stuck in a call nothing would end. Its goroutine is
	// abandoned (Go cannot kill it) and the run moves on.
	Hang Status = "hang"
	// Blocked: the case was not run because something it is built on had
	// already failed in this run (a required suite, or an earlier hang);
	// the message names it. It counts as a failure: the run is failing
	// already, and running the case would only have repeated it, slowly.
	Blocked Status = "blocked"
)

// DefaultTimeout is the per-case limit when Options.Timeout is zero. Cases
// take milliseconds when the selector works; the limit only has to be long
// enough not to misfire on a loaded two-core machine.
const DefaultTimeout = 30 * time.Second

// Options tune Run. The zero value runs every case with DefaultTimeout.
type Options struct {
	// Timeout is the per-case limit; a case over it is reported as Hang.
	// Zero means each suite's own (Suite.Timeout, else DefaultTimeout).
	Timeout time.Duration
	// Match selects cases by name; nil runs them all.
	Match func(name string) bool
	// Subject names what is being certified in the results, e.g.
	// "epoll (out-of-process)". Empty means the selector's Capabilities().Name.
	Subject string
	// Progress, if set, is called from Run's goroutine when each case starts
	// (Status Running) and when it ends.
	Progress func(Result)
	// KeepGoing runs every selected case even after the run has failed in a
	// way that makes later cases pointless (a hang; a failed suite another
	// requires), instead of reporting them Blocked at once. Slower: for an
	// author who wants every symptom.
	KeepGoing bool
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
	// Incidents is what supervision had to do for the case's back-ends; any
	// fails the case unless it provoked them (Provoked says why).
	Incidents Incidents `json:"incidents,omitzero"`
	Provoked  string    `json:"incidents_provoked,omitempty"`
}

// Run runs the cases of s against the selectors f builds, one at a time, and
// returns a result per selected case in suite order. It builds one selector
// first to read its capabilities; if that fails there is nothing to certify
// and Run returns the error. If ctx is cancelled Run stops and returns the
// results so far with ctx's error. f may be nil for a suite whose cases
// build their own back-ends (see Factory).
//
// Run is a Session of one suite; to run several suites against one factory
// with their dependencies honoured, use a Session.
func Run(ctx context.Context, s Suite, f Factory, opts Options) ([]Result, error) {
	ss, err := NewSession(f, opts)
	if err != nil {
		return nil, err
	}
	return ss.Run(ctx, s)
}

// A Session runs suites one after another against one factory and fails
// fast: a suite that Requires one that failed in the session is blocked,
// and after a hang every later case is blocked (the hung goroutine still
// holds its selector, plugin process and descriptors, so later verdicts
// could not be trusted), unless Options.KeepGoing. It is what
// `loopkernel conformance` runs.
type Session struct {
	rn   *runner
	opts Options

	// failed maps each suite run so far that failed to its first failing
	// case and rule; hung is the first case that hung.
	failed map[string]string
	hung   string
}

// NewSession builds one selector from f to read its capabilities (f may be
// nil; see Run).
func NewSession(f Factory, opts Options) (*Session, error) {
	rn, err := newRunner(f, opts)
	if err != nil {
		return nil, err
	}
	return &Session{rn: rn, opts: opts, failed: map[string]string{}}, nil
}

// Subject is what the session certifies, as its results name it.
func (ss *Session) Subject() string { return ss.rn.subject }

// Run runs the selected cases of s; see the package Run for the rest.
func (ss *Session) Run(ctx context.Context, s Suite) ([]Result, error) {
	opts := ss.opts
	var results []Result
	for _, cs := range s.Cases {
		if opts.Match != nil && !opts.Match(cs.Name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return results, err
		}
		if opts.Progress != nil {
			opts.Progress(Result{Suite: s.Name, Subject: ss.rn.subject, Case: cs.Name, Status: Running})
		}
		var r Result
		if why := ss.blocker(s); why != "" {
			r = Result{Suite: s.Name, Subject: ss.rn.subject, Case: cs.Name, Status: Blocked, Message: why}
		} else {
			r = ss.rn.run(ctx, s, cs)
		}
		if opts.Progress != nil {
			opts.Progress(r)
		}
		results = append(results, r)
		switch r.Status {
		case Fail, Hang:
			if _, ok := ss.failed[s.Name]; !ok {
				ss.failed[s.Name] = fmt.Sprintf("%s: %s", cs.Name, firstLine(r.Message))
			}
			if r.Status == Hang && ss.hung == "" {
				ss.hung = cs.Name
			}
		}
	}
	return results, ctx.Err()
}

// blocker says why the cases of s are not to be run, or "".
func (ss *Session) blocker(s Suite) string {
	if ss.opts.KeepGoing {
		return ""
	}
	if ss.hung != "" {
		return fmt.Sprintf("blocked: not run because %s hung earlier in this run (its goroutine, selector and descriptors were abandoned, so later verdicts could not be trusted; --keep-going runs it anyway)", ss.hung)
	}
	for _, req := range s.Requires {
		if first, ok := ss.failed[req]; ok {
			return fmt.Sprintf("blocked: not run because the %s suite it is built on failed (first: %s; --keep-going runs it anyway)", req, first)
		}
	}
	return ""
}

// runner holds what every case of a run shares: the factory and the
// capabilities read once from a probe selector (a factory may start a
// process, so it is not called just to ask again).
type runner struct {
	f       Factory
	caps    sdk.Capabilities
	subject string
	timeout time.Duration
	// failed is set once a case has failed or hung: the verdict is fail
	// whatever follows, so the contract checker's patience drops (see
	// patience) and a broken back-end is done with quickly.
	failed atomic.Bool
}

func newRunner(f Factory, opts Options) (*runner, error) {
	rn := &runner{f: f, subject: opts.Subject, timeout: opts.Timeout}
	if f != nil {
		probe, err := f()
		if err != nil {
			return nil, fmt.Errorf("conformance: build selector to read capabilities: %w", err)
		}
		rn.caps = probe.Capabilities()
		if err := probe.Close(); err != nil {
			return nil, fmt.Errorf("conformance: close probe selector %q: %w", rn.caps.Name, err)
		}
	}
	if rn.subject == "" {
		rn.subject = rn.caps.Name
	}
	return rn, nil
}

func (rn *runner) run(ctx context.Context, s Suite, cs Case) Result {
	patience := overrun
	if rn.failed.Load() {
		patience = overrunAfterFailure
	}
	timeout := cmp.Or(rn.timeout, s.Timeout, DefaultTimeout)
	r := runCase(ctx, cs, rn.f, rn.caps, timeout, patience)
	r.Suite, r.Subject, r.Case = s.Name, rn.subject, cs.Name
	if r.Status == Fail || r.Status == Hang {
		rn.failed.Store(true)
	}
	return r
}

// runCase runs one case body on its own goroutine, so that FailNow and Skip
// can end it with runtime.Goexit and a case that never returns can be
// abandoned.
func runCase(ctx context.Context, cs Case, f Factory, caps sdk.Capabilities, timeout, patience time.Duration) Result {
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
	c.patience = patience
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
	hang := ""
	select {
	case <-done:
	case <-c.abandoned:
		cancel() // so that the case's helper goroutines stop
		c.mu.Lock()
		hang = c.why
		c.mu.Unlock()
	case <-cctx.Done():
		// The case may still finish during cleanup; prefer its own verdict.
		select {
		case <-done:
		default:
			hang = fmt.Sprintf("case did not end within %v (%v)", timeout, context.Cause(cctx))
		}
	}
	// Incidents are read even from a hung case: they may be why it hung.
	inc := c.settleIncidents()
	c.mu.Lock()
	defer c.mu.Unlock()
	r := Result{Duration: time.Since(start), Incidents: inc, Provoked: c.provoked}
	logs := slices.Clone(c.logs)
	for rule, n := range c.violated {
		if n > 1 {
			logs = append(logs, fmt.Sprintf("rule %q was broken %d more time(s) after the first report", rule, n-1))
		}
	}
	r.Log = strings.Join(logs, "\n")
	switch {
	case hang != "":
		r.Status = Hang
		r.Message = hang
		if len(c.msgs) > 0 {
			r.Message = strings.Join(c.msgs, "\n") + "\n" + hang
		}
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
