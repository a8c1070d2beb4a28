package conformance

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/sdk"
)

// The kernel contract: what kernel.Loop promises a program written against
// asyncio's AbstractEventLoop, checked with a loop built on each selector the
// factory makes. It is the behaviour CPython's test_asyncio pins down
// (callbacks, stop and close semantics, timers, futures, tasks and their
// cancellation, the exception handler, debug mode, signals, descriptor
// watching, executors, async generator shutdown), written once so that every
// back-end and every placement of it is held to the same rules.

// KernelConfig chooses how the loops of the kernel suite are built.
type KernelConfig struct {
	// Debug builds every loop with kernel.WithDebug(true), so the whole
	// contract is also checked with debug mode's extra bookkeeping (thread
	// checks, scheduling-site capture, slow-callback timing) in the way.
	// Without it the loops follow LOOPKERNEL_DEBUG, as kernel.New does.
	Debug bool
	// Driver, if set, builds the I/O driver each loop runs on (as
	// NetConfig.Driver), so the contract certifies a driver such as the
	// completion driver; nil builds the readiness driver over a selector
	// from the factory.
	Driver func() (sdk.Driver, error)
}

// KernelSuite returns the kernel contract for cfg. Its cases build their
// selectors with the factory they are run against, so the suite certifies
// the loop on that back-end and placement.
func KernelSuite(cfg KernelConfig) Suite {
	name := "kernel"
	if cfg.Debug {
		name = "kernel-debug"
	}
	var cases []Case
	for _, group := range [][]kcase{
		kernelLoopCases,
		kernelTimerCases,
		kernelFutureCases,
		kernelTaskCases,
		kernelToolkitCases,
		kernelSyncCases,
		kernelHandlerCases,
		kernelIOCases,
		kernelEdgeCases,
	} {
		for _, kc := range group {
			cases = append(cases, Case{Name: kc.name, Needs: kc.needs, Run: func(c *C) {
				kc.run(&kt{C: c, cfg: cfg})
			}})
		}
	}
	return Suite{Name: name, Cases: cases, Requires: []string{"selector"}}
}

// RunKernel binds every kernel-contract case to t as a subtest, each loop
// built on a selector from f:
//
//	func TestKernelOnMySelector(t *testing.T) { conformance.RunKernel(t, mysel.New) }
//
// Pass a KernelConfig to choose, for instance, debug mode. Run it with
// -race: several cases schedule from other goroutines.
func RunKernel(t *testing.T, f Factory, cfg ...KernelConfig) {
	t.Helper()
	var kc KernelConfig
	if len(cfg) > 0 {
		kc = cfg[0]
	}
	RunSuite(t, KernelSuite(kc), f)
}

// kcase is a kernel-contract case before it is bound to a configuration.
type kcase struct {
	name  string
	needs string
	run   func(k *kt)
}

// kt is what a kernel case body works with: the case context (testify's
// TestingT, fixtures, cleanups) and the configuration its loops are built
// with.
type kt struct {
	*C
	cfg KernelConfig
}

// runLimit is how long a case lets a loop run before its watchdog stops the
// loop and fails the case. It only matters when the kernel is broken; a
// working case stops its loop in milliseconds.
const runLimit = 5 * time.Second

// syncBuffer is a bytes.Buffer safe for the loop's logger and the case to
// share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// recSelector wraps the selector under test and records the timeout of
// every Wait, so cases can check how the loop polls (zero timeout when
// stopping or busy, the distance to the next timer, -1 when idle) without
// depending on how long the back-end really slept.
type recSelector struct {
	sdk.Selector
	mu       sync.Mutex
	timeouts []time.Duration
	waiting  atomic.Bool
	lastN    atomic.Int32 // events the last Wait reported
}

func (r *recSelector) Wait(events []sdk.Event, timeout time.Duration) (int, error) {
	r.mu.Lock()
	r.timeouts = append(r.timeouts, timeout)
	r.mu.Unlock()
	r.waiting.Store(true)
	defer r.waiting.Store(false)
	n, err := r.Selector.Wait(events, timeout)
	r.lastN.Store(int32(n))
	return n, err
}

// waits returns the timeouts recorded so far and forgets them.
func (r *recSelector) waits() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.timeouts
	r.timeouts = nil
	return w
}

// loopFix is one loop a case built, with the recording selector beneath it
// and the buffer its logger writes to.
type loopFix struct {
	*kernel.Loop
	rec *recSelector
	log *syncBuffer
}

// newLoop builds a loop on a selector from the factory under test, wrapped
// in a recSelector, logging to a buffer. The loop is closed when the case
// ends and whatever it logged is attached to the case's log.
func (k *kt) newLoop(opts ...kernel.Option) *loopFix {
	var rec *recSelector
	var drv sdk.Driver
	if k.cfg.Driver != nil {
		drv, rec = k.recordingDriver()
	} else {
		rec = &recSelector{Selector: k.loopSelector()}
	}
	buf := &syncBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "loopkernel", Output: buf, Level: hclog.Trace})
	all := []kernel.Option{kernel.WithLogger(logger)}
	if k.cfg.Debug {
		all = append(all, kernel.WithDebug(true))
	}
	all = append(all, opts...)
	var l *kernel.Loop
	if drv != nil {
		l = kernel.NewOnDriver(drv, all...)
	} else {
		l = kernel.New(rec, all...)
	}
	k.Cleanup(func() {
		if err := l.Close(); err != nil {
			k.Errorf("closing the loop at the end of the case: %v", err)
		}
		if s := buf.String(); s != "" {
			k.Logf("loop log:\n%s", s)
		}
	})
	return &loopFix{Loop: l, rec: rec, log: buf}
}

// watch arms a watchdog for one run of l: if the run has not ended after
// runLimit, the watchdog stops the loop from another goroutine. The returned
// function disarms it and fails the case if it fired. It uses a goroutine,
// not a loop timer, so that it never changes the poll timeouts a case
// checks.
func (k *kt) watch(l *loopFix, what string) func() {
	var fired atomic.Bool
	t := time.AfterFunc(runLimit, func() {
		fired.Store(true)
		l.CallSoonThreadsafe(l.Stop)
		// Wake the selector directly too, in case the kernel's own wake-up
		// is what is broken.
		l.rec.Wake()
	})
	return func() {
		t.Stop()
		if fired.Load() {
			k.Errorf("rule: %s: the loop was still running after %v; the watchdog stopped it", what, runLimit)
			k.FailNow()
		}
	}
}

// runForever runs l until it stops, under a watchdog.
func (k *kt) runForever(l *loopFix, what string) error {
	done := k.watch(l, what)
	err := l.RunForever()
	done()
	return err
}

// runUntil runs l until aw is done, under a watchdog.
func (k *kt) runUntil(l *loopFix, aw kernel.Awaitable, what string) error {
	done := k.watch(l, what)
	err := l.RunUntilComplete(aw)
	done()
	return err
}

// runOnce runs exactly one iteration of l: Stop before RunForever polls once
// and runs the callbacks ready then.
func (k *kt) runOnce(l *loopFix) {
	l.Stop()
	if err := k.runForever(l, "one iteration"); err != nil {
		k.Errorf("rule: RunForever after Stop runs one iteration and returns nil: %v", err)
		k.FailNow()
	}
}

// waitThen runs fn once the loop is blocked in its selector (or runLimit
// has passed), from another goroutine.
func waitThen(l *loopFix, fn func()) {
	go func() {
		deadline := time.Now().Add(runLimit)
		for !l.rec.waiting.Load() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		fn()
	}()
}

// idleWaits runs l until it blocks in its selector, stops it there, and
// returns the poll timeouts of that run, the first of which is the one the
// loop chose for its idle state.
func (k *kt) idleWaits(l *loopFix, what string) []time.Duration {
	l.rec.waits()
	waitThen(l, func() { l.CallSoonThreadsafe(l.Stop) })
	if err := k.runForever(l, what); err != nil {
		k.Errorf("rule: %s: RunForever returns nil once stopped: %v", what, err)
		k.FailNow()
	}
	waits := l.rec.waits()
	if len(waits) == 0 {
		k.Errorf("rule: %s: the loop polls its selector before it is stopped there", what)
		k.FailNow()
	}
	return waits
}

// runsCallbacks checks that one iteration of l runs a callback scheduled
// now; rule is what that shows.
func (k *kt) runsCallbacks(l *loopFix, rule string) {
	ran := false
	_, err := l.CallSoon(func() { ran = true })
	k.must(err, "CallSoon")
	k.runOnce(l)
	if !ran {
		k.Errorf("rule: %s: a callback scheduled with CallSoon did not run", rule)
		k.FailNow()
	}
}

// must fails the case when a scheduling call that the contract says
// succeeds returned an error.
func (k *kt) must(err error, what string) {
	if err != nil {
		k.Errorf("rule: %s succeeds on an open loop: %v", what, err)
		k.FailNow()
	}
}

// task runs coro to completion on l and returns its result.
func runTask[T any](k *kt, l *loopFix, coro func(co *kernel.Co) (T, error)) (*kernel.Task[T], error) {
	task, err := kernel.CreateTask(l.Loop, coro)
	k.must(err, "CreateTask")
	err = k.runUntil(l, task, "run a task to completion")
	return task, err
}
