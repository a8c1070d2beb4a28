// Package conformance is the certification suite every back-end and
// placement must pass: the same case bodies run under `go test` (RunSuite,
// RunSelector) and from a command-line runner that has no *testing.T
// (Session, Run, WriteJUnit, WriteJSON).
//
// The shape follows Twisted's reactor mixins and csi-sanity: a case is
// written once against a factory, then bound to every implementation; a case
// that needs a capability the implementation lacks is skipped with that
// capability named, and every failure names the contract rule that broke, so
// a back-end author reads "rule: ..." and knows what to fix without reading
// the case.
//
// A verdict must mean something, so the runner does more than run bodies:
// every selector a case builds is wrapped in a checker (checked.go) that
// holds each Wait to the contract whatever the case looks at (an event must
// belong to a registration that is ready, a Wait must end once its timeout
// has passed or a Wake came, Wait must not panic); lateness is measured
// against a reference selector in the same run (latency.go); a supervised
// plugin's restarts, health failures and protocol violations fail the case
// that did not provoke them (incidents.go); and a run fails fast (a suite
// built on a failed one is blocked, a hang blocks the rest) instead of
// waiting out every timeout. The suite's own certificate is the mutation
// test in internal/mutants: broken back-ends that must each fail here.
//
// Case bodies use testify (require/assert) against *C, which implements
// testify's TestingT without depending on the testing package's runner.
package conformance

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/loopkernel/loopkernel/sdk"
)

// Factory builds a fresh selector under test. Each case calls it as often as
// it needs, so it must return an independent selector every time. A suite
// of another family (resolver, executor) binds its own factory in its case
// bodies, as KernelSuite binds its configuration, and is run with a nil
// Factory.
type Factory func() (sdk.Selector, error)

// Case is one contract check.
type Case struct {
	// Name is unique within its suite and stable: reports and -run style
	// filters refer to it.
	Name string
	// Needs names a capability the case requires, or "" for none. Known
	// values: "regular-files" (Capabilities.RegularFiles) and "fds:N"
	// (Capabilities.MaxFDs is 0 or at least N). A selector without it skips
	// the case and the skip reason names it. A need of another family,
	// "resolver:..." or "executor:...", is the binding's to check (the case
	// body skips); the runner only shows it (`loopkernel conformance --list`).
	Needs string
	// Alone marks a case that changes process-wide state (the descriptor
	// limit, say) that would break any case running beside it: the runner
	// runs it while no other case of any run in this process is running.
	Alone bool
	// Run is the body. It reports through c, never by returning an error.
	Run func(c *C)
}

// Suite is a named list of cases run against one factory. The selector
// contract is one suite; the kernel contract, built on a selector from the
// same factory, is another run by the same runner.
type Suite struct {
	Name  string
	Cases []Case
	// Requires names suites this one is built on. When a Session has run
	// one of them and it failed, every case of this suite is reported
	// Blocked, naming the failure, instead of being run: its failures would
	// only repeat that one, slowly (the kernel and net suites require the
	// selector suite).
	Requires []string
	// Timeout is the per-case limit when Options.Timeout is zero; zero
	// means DefaultTimeout. A suite whose cases move much data (the
	// executor's 100 MiB payloads) sets a longer one.
	Timeout time.Duration
}

// missing returns why caps does not satisfy need, or "" if it does.
func missing(caps sdk.Capabilities, need string) string {
	switch {
	case need == "", strings.HasPrefix(need, "resolver:"), strings.HasPrefix(need, "executor:"):
		return ""
	case need == "regular-files":
		if caps.RegularFiles {
			return ""
		}
		return fmt.Sprintf("needs capability regular-files; selector %q cannot watch regular files", caps.Name)
	case strings.HasPrefix(need, "fds:"):
		n, err := strconv.Atoi(strings.TrimPrefix(need, "fds:"))
		if err != nil {
			return fmt.Sprintf("unknown capability %q", need)
		}
		if caps.MaxFDs == 0 || caps.MaxFDs >= n {
			return ""
		}
		return fmt.Sprintf("needs capability %s; selector %q takes at most %d registrations", need, caps.Name, caps.MaxFDs)
	}
	return fmt.Sprintf("unknown capability %q", need)
}

// C is the context a case body runs with. It satisfies testify's
// require.TestingT and assert.TestingT, so case bodies use testify as tests
// do, but it records the outcome itself instead of relying on *testing.T;
// that is what lets the same bodies run from a command-line runner.
//
// FailNow and Skip end the case by exiting its goroutine, as their testing
// counterparts do, so they must be called from the case's own goroutine.
type C struct {
	name    string
	ctx     context.Context
	factory Factory
	caps    sdk.Capabilities

	mu         sync.Mutex
	failed     bool
	skipped    bool
	skipReason string
	msgs       []string
	logs       []string
	cleanups   []func()

	// owned is the fixture descriptors the case has not closed yet; they are
	// closed when it ends (see fixtures.go).
	owned map[int]bool

	// watched is every supervised back-end the case built (incidents.go);
	// provoked says why the case expects supervision incidents, if it does.
	watched  []supervised
	provoked string
	// violated holds the rules the selector checker has already reported,
	// so that a broken selector's thousandth violation adds no line.
	violated map[string]int
	// abandoned is closed (once, with why set) when the checker finds the
	// case stuck in a selector call nothing will end: the runner reports it
	// at once instead of waiting out the case's time limit.
	abandoned   chan struct{}
	abandonOnce sync.Once
	why         string
	// patience is how long past its deadline the checker lets a Wait stay
	// blocked (overrun, or overrunAfterFailure once the run has failed).
	patience time.Duration
}

func newC(ctx context.Context, name string, f Factory, caps sdk.Capabilities) *C {
	return &C{name: name, ctx: ctx, factory: f, caps: caps, owned: make(map[int]bool),
		violated: make(map[string]int), abandoned: make(chan struct{}), patience: overrun}
}

// Name is the case name (testify prints it in failure reports).
func (c *C) Name() string { return c.name }

// Context is cancelled when the case runs out of time or the run is
// cancelled; a case that blocks should watch it.
func (c *C) Context() context.Context { return c.ctx }

// Capabilities are those the selector under test declared.
func (c *C) Capabilities() sdk.Capabilities { return c.caps }

// Errorf records a failure and lets the case continue.
func (c *C) Errorf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failed = true
	c.msgs = append(c.msgs, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

// FailNow marks the case failed and ends it.
func (c *C) FailNow() {
	c.mu.Lock()
	c.failed = true
	c.mu.Unlock()
	runtime.Goexit()
}

// Helper exists for testify; C reports no line numbers of its own.
func (c *C) Helper() {}

// Logf records a line shown with the case's result.
func (c *C) Logf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logs = append(c.logs, fmt.Sprintf(format, args...))
}

// Skip ends the case as skipped. The reason should name what was missing.
func (c *C) Skip(reason string) {
	c.mu.Lock()
	c.skipped = true
	c.skipReason = reason
	c.mu.Unlock()
	runtime.Goexit()
}

// Cleanup registers f to run when the case ends, last registered first.
func (c *C) Cleanup(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cleanups = append(c.cleanups, f)
}

// NewSelector builds a selector from the factory under test and closes it
// when the case ends. A factory failure ends the case as failed.
//
// The selector comes wrapped in the contract checker (checked.go): every
// Wait is held to the rules whatever the case body looks at, and a plugin
// selector's supervision incidents are counted (Watch).
func (c *C) NewSelector() sdk.Selector { return c.newSelector(true) }

// loopSelector is NewSelector for a selector a loop will own (the kernel
// and net suites): the same checks but poll(2)'s confirmation of each
// event, a system call per event on the loop's hot path that only a case
// seeing the events itself needs (and a loop case's timing may not afford
// on a loaded machine).
func (c *C) loopSelector() sdk.Selector { return c.newSelector(false) }

func (c *C) newSelector(confirm bool) sdk.Selector {
	if c.factory == nil {
		c.Errorf("fixture: this suite was run without a selector factory (not a back-end failure)")
		c.FailNow()
	}
	s, err := c.factory()
	if err != nil {
		c.Errorf("factory: %v", err)
		c.FailNow()
	}
	c.Watch(s)
	cs := newChecked(c, s)
	cs.confirm = confirm
	c.Cleanup(func() { cs.Close() }) // ErrClosed when the case closed it itself
	return cs
}

// abandon ends the case at once as a hang, with why, while its goroutine
// stays blocked in a call that will never return.
func (c *C) abandon(why string) {
	c.abandonOnce.Do(func() {
		c.mu.Lock()
		c.why = why
		c.mu.Unlock()
		close(c.abandoned)
	})
}

// runCleanups runs the registered cleanups, each protected so that a
// panicking one cannot stop the others.
func (c *C) runCleanups() {
	for {
		c.mu.Lock()
		if len(c.cleanups) == 0 {
			c.mu.Unlock()
			return
		}
		f := c.cleanups[len(c.cleanups)-1]
		c.cleanups = c.cleanups[:len(c.cleanups)-1]
		c.mu.Unlock()
		func() {
			defer func() {
				if r := recover(); r != nil {
					c.Errorf("cleanup panicked: %v", r)
				}
			}()
			f()
		}()
	}
}
