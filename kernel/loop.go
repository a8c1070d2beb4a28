package kernel

import (
	"context"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/driver/readiness"
	"github.com/loopkernel/loopkernel/internal/yield"
	"github.com/loopkernel/loopkernel/sdk"
)

const (
	// maxSelectTimeout caps one wait, as CPython does: timers a month away
	// must not overflow a back-end's millisecond timeout.
	maxSelectTimeout = 24 * time.Hour
	// Lazily removed cancelled timers are swept out of the heap when they are
	// more than half of it (and the heap is not tiny), so a program that keeps
	// cancelling timers cannot grow the heap without bound.
	minTimersForSweep = 100
	// pollBatch is how many callbacks one poll of the driver may return.
	pollBatch = 512
	// defaultSlowCallback is the debug-mode threshold for logging a callback.
	defaultSlowCallback = 100 * time.Millisecond
	// busyPollInterval bounds how long the loop may go without polling the
	// driver while callbacks keep it busy. A zero-timeout poll is a system
	// call (about a microsecond); a loop whose callbacks schedule callbacks
	// (task switches, future chains) would otherwise pay it every iteration.
	// Like tokio's event interval, the loop skips zero-timeout polls until
	// this much time has passed since the last one, so readiness is picked up
	// at most this late while no callback ever starves I/O. A stopping loop
	// always polls, as the spec requires.
	busyPollInterval = 25 * time.Microsecond
	// A poll is not always that cheap: an out-of-process selector answers a
	// zero-timeout wait with a socket round trip to its plugin (tens of
	// microseconds of both processes' CPU). The loop therefore times its
	// busy polls and stretches the interval to pollCostFactor times their
	// running cost, so polling takes at most about 1/pollCostFactor of a
	// busy loop's time whatever the back-end; maxBusyPollInterval caps how
	// late that lets readiness be picked up.
	pollCostFactor      = 8
	maxBusyPollInterval = 500 * time.Microsecond
	// A busy loop with no timer due soon reads the clock (to ration polls)
	// only every busyClockIters iterations, and sooner once it has run
	// busyClockWork callbacks since the last read. The iteration bound keeps
	// a loop of few, slow callbacks polling every few callbacks' time; the
	// work bound makes a loop running big batches look at the clock every
	// iteration.
	busyClockIters = 8
	busyClockWork  = 64
	// timerSlack is how far past the last clock reading the first timer
	// must lie for a busy loop to skip reading the clock: such a timer can
	// only be due if the few iterations since that reading took longer
	// than this, and then it runs late by at most their time (uvloop's
	// timers, on libuv's clock cached once per iteration and kept in
	// milliseconds, are as late as that). A far-off deadline that is
	// cancelled at once, as a WaitFor's whose awaitable finishes in time,
	// otherwise cost two clock reads per call, a third of WaitFor's cost
	// over a bare await.
	timerSlack = time.Millisecond
)

// clockEpoch and clockBase anchor Loop.Time, a monotonic clock shared by
// every loop: the system's CLOCK_MONOTONIC (time since boot), as Python's
// time.monotonic() under asyncio's loop.time(), read through Go's monotonic
// clock. A clock that starts far from zero keeps the deadlines of negative
// delays positive and in order (CallLater(-2s) before CallLater(-1s)) in a
// program that has just started; deadlines below zero are clamped to zero
// (see CallAt).
var clockEpoch, clockBase = monotonicNow()

func monotonicNow() (time.Time, time.Duration) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Now(), 0
	}
	return time.Now(), time.Duration(ts.Nano())
}

// Loop is an event loop (asyncio.AbstractEventLoop). Create one with New; a
// Loop must be closed with Close when it is no longer needed.
type Loop struct {
	drv    sdk.Driver
	polled []func() // what the last Poll returned, before it is queued
	logger hclog.Logger

	ready  ring
	timers timerHeap
	// unarmed are deadlines not yet in the heap (callLaterUnarmed): each
	// holds its delay in when until the loop next reads its clock.
	unarmed  []*handle
	timerSeq uint64
	// cancelledTimers counts cancelled handles still in the heap.
	cancelledTimers int
	free            *handle // recycled handles

	// Callbacks from other goroutines: appended under tsMu, moved to ready
	// by the loop. sleeping tells a producer whether the loop may be blocked
	// in Wait and so needs a Wake.
	tsMu     sync.Mutex
	tsQueue  []*handle
	tsSpare  []*handle
	tsLen    atomic.Int32
	sleeping atomic.Bool

	running  bool
	stopping bool
	closed   atomic.Bool // read by other goroutines in CallSoonThreadsafe

	files ioTable   // descriptors open in the driver (kernel/io_table.go)
	procs procTable // children of SubprocessExec (kernel/subprocess_reap.go)
	sig   signalState

	excHandler  ExceptionHandler
	taskFactory TaskFactory
	currentTask *taskState
	tasks       []*taskState // pending tasks, ended by Close; each knows its index (taskState.slot)

	taskAux taskAux // idle coroutine runners, unread task errors (task.go)

	debug        bool
	slowCallback time.Duration

	executor    Executor
	ownExecutor bool
	// life is cancelled by Close (endLife); made on first use by
	// lifeContext, the parent of every RunInExecutor call's context.
	life    context.Context
	endLife context.CancelFunc

	be backends // resolver and function executor (kernel/backends.go)

	net netState // scratch shared by the network transports (kernel/net_scratch.go)

	asyncgens         map[asyncGenCloser]struct{}
	asyncgensShutdown bool

	fatal    error         // set when the driver fails; ends RunForever
	lastPoll time.Duration // loop clock at the last poll of the driver
	lastNow  time.Duration // loop clock at its last reading in gather
	// pollCost is a running average of how long a busy zero-timeout poll
	// takes; pollEvery is the rationing interval derived from it.
	pollCost, pollEvery time.Duration
	yield               yield.Ticker // see internal/yield
	busyIters           int          // iterations since the clock was last read while busy
	busyWork            int          // callbacks run since then
	// batch counts the callbacks of the current iteration still to run, -1
	// between iterations; it lives here so that a batch cut by a panicking
	// callback resumes where it stopped (see iterate).
	batch int
	// direct is set by iterate just before it runs a task's step as the
	// batch's own callback, and taken by the step (see chainStep).
	direct bool
	// viaStepFn is set by a task's step run as a done callback (stepFn),
	// which only iterate runs, and taken by the step (see skipTurn).
	viaStepFn bool
}

// Option configures a Loop at New.
type Option func(*Loop)

// WithLogger sets the logger for the default exception handler and debug
// reports. The default is an hclog logger named "loopkernel" on stderr.
func WithLogger(l hclog.Logger) Option { return func(lp *Loop) { lp.logger = l } }

// WithDebug sets debug mode, overriding the LOOPKERNEL_DEBUG environment
// variable.
func WithDebug(on bool) Option { return func(lp *Loop) { lp.debug = on } }

// WithExecutor sets the default executor used by RunInExecutor.
func WithExecutor(e Executor) Option { return func(lp *Loop) { lp.executor = e } }

// New returns a loop whose I/O goes through the readiness driver
// (driver/readiness) over sel, in process or a plugin's. The loop owns sel
// from now on and closes it in Close. Debug mode starts on when the
// environment variable LOOPKERNEL_DEBUG is set to anything but "" or "0".
func New(sel sdk.Selector, opts ...Option) *Loop {
	return NewOnDriver(readiness.New(sel), opts...)
}

// NewOnDriver returns a loop whose I/O goes through d, any driver of the
// I/O seam (sdk.Driver). The loop owns d from now on and closes it in
// Close. Options and debug mode are as for New.
func NewOnDriver(d sdk.Driver, opts ...Option) *Loop {
	l := &Loop{
		drv:          d,
		polled:       make([]func(), pollBatch),
		slowCallback: defaultSlowCallback,
	}
	if v := os.Getenv("LOOPKERNEL_DEBUG"); v != "" && v != "0" {
		l.debug = true
	}
	for _, o := range opts {
		o(l)
	}
	if l.logger == nil {
		l.logger = hclog.New(&hclog.LoggerOptions{Name: "loopkernel", Output: os.Stderr})
	}
	return l
}

// Driver returns the I/O driver the loop polls, so that a caller can read
// its Capabilities (which back-end runs underneath, what it supports).
func (l *Loop) Driver() sdk.Driver { return l.drv }

// Logger returns the loop's logger.
func (l *Loop) Logger() hclog.Logger { return l.logger }

// Time returns the loop's clock: a monotonic reading, shared by all loops,
// against which CallAt deadlines are given (asyncio: loop.time()).
func (l *Loop) Time() time.Duration { return clockBase + time.Since(clockEpoch) }

// IsRunning reports whether the loop is running.
func (l *Loop) IsRunning() bool { return l.running }

// IsClosed reports whether the loop was closed.
func (l *Loop) IsClosed() bool { return l.closed.Load() }

// Stop stops a running loop after the current batch of callbacks; called
// before RunForever, it makes the next run poll once with zero timeout, run
// that batch and return. Not thread-safe: from another goroutine, use
// CallSoonThreadsafe(l.Stop).
func (l *Loop) Stop() { l.stopping = true }

// checkUsable is the guard of every non-thread-safe scheduling call; its
// common case is small enough to inline into CallSoon.
func (l *Loop) checkUsable() error {
	if !l.debug && !l.closed.Load() {
		return nil
	}
	return l.checkUsableSlow()
}

// checkUsableSlow is kept out of line so that checkUsable stays small
// enough to inline.
//
//go:noinline
func (l *Loop) checkUsableSlow() error {
	if l.closed.Load() {
		return ErrClosed
	}
	return l.checkGoroutine()
}

// RunForever runs the loop until Stop is called. It returns an error if the
// loop is closed or already running, or if the back-end failed for good (the
// failure is also passed to the exception handler).
func (l *Loop) RunForever() error {
	if l.closed.Load() {
		return ErrClosed
	}
	if l.running {
		return ErrRunning
	}
	// The goroutine acts for l from now on (goroutine.go): RunningLoop
	// answers l, and no other loop may run here until this one returns.
	gk := gkey()
	if err := goroutines.enter(gk, l); err != nil {
		return err
	}
	l.running, l.fatal = true, nil
	// A batch cut short by a Goexit in the last run stays in the ready
	// queue and simply joins the next batch.
	l.batch = -1
	// The first busy iteration reads the clock: time passed since the last
	// run, so the last reading says nothing about which timers are due
	// (see timerSlack).
	l.busyIters = busyClockIters
	defer func() {
		goroutines.leave(gk)
		l.running, l.stopping = false, false
	}()
	for !l.iterate(false) {
	}
	return l.fatal
}

// RunUntilComplete runs the loop until f is done and returns f's error (nil
// on success; read the value with f.Result). Pass CreateTask(...) to run a
// coroutine. If the loop is stopped before f completes, it returns
// ErrStoppedBeforeDone.
func (l *Loop) RunUntilComplete(f Awaitable) error {
	if l.closed.Load() {
		return ErrClosed
	}
	if l.running {
		return ErrRunning
	}
	core := f.core()
	if core.loop != l {
		return fmt.Errorf("run until complete: %w", ErrDifferentLoop)
	}
	id := core.addDone(l.Stop)
	err := l.RunForever()
	core.removeDone(id)
	if err != nil {
		return err
	}
	if !core.done() {
		return ErrStoppedBeforeDone
	}
	return core.errOf()
}

// Close closes the loop: pending callbacks and timers are discarded, signal
// handlers removed, the default executor shut down without waiting, children
// still running killed and reaped, and the I/O driver (and its back-end)
// closed. Closing a running loop fails; closing twice does nothing.
func (l *Loop) Close() error {
	if l.running {
		return fmt.Errorf("cannot close a running event loop: %w", ErrRunning)
	}
	if l.closed.Load() {
		return nil
	}
	l.abandonStarted()
	l.tsMu.Lock()
	l.closed.Store(true)
	clear(l.tsQueue)
	l.tsQueue = l.tsQueue[:0]
	l.tsMu.Unlock()
	l.tsLen.Store(0)
	l.ready.clear()
	for _, h := range l.timers {
		h.index = -1
	}
	for _, h := range l.unarmed {
		h.index = -1
	}
	clear(l.unarmed)
	l.unarmed = l.unarmed[:0]
	clear(l.timers)
	l.timers = l.timers[:0]
	l.sig.removeAll()
	l.abandonTasks()
	if l.executor != nil && l.ownExecutor {
		l.executor.Shutdown(false)
	}
	l.executor = nil
	l.procs.closeAll(l) // kills and reaps running children, see kernel/subprocess_reap.go
	if l.endLife != nil {
		l.endLife()
	}
	l.files.reset()
	if err := l.be.close(); err != nil {
		l.logger.Warn("closing the loop's back-ends failed", "error", err)
	}
	return l.drv.Close()
}

// iterate runs loop iterations (only one if once is set) until the loop
// stops or its driver fails, and then reports true. When a callback panics
// it reports the panic and returns false; the caller calls it again and the
// batch goes on where it was cut. One iteration is gather (phases 1 to 4 of
// the package comment) and then phase 5, running exactly the callbacks that
// were ready when the batch began; whatever they schedule waits for the next
// iteration.
//
// The callbacks run in this frame, under one deferred recover, rather than
// in a helper per iteration and a recover per callback: besides the defers'
// own cost, a task switch leaves the CPU's return-address predictions for
// this goroutine's stack stale, so every frame between this loop and a
// resumed coroutine costs a mispredicted return on every switch.
func (l *Loop) iterate(once bool) (stopped bool) {
	var cur *handle // the callback running, if any
	defer func() {
		if r := recover(); r != nil {
			if cur == nil {
				panic(r) // the loop's own failure, not a callback's
			}
			l.reportPanic(cur, r)
			l.release(cur)
		}
	}()
	for {
		if l.batch < 0 {
			// Not inside a batch: gather the next one.
			l.gather()
			if l.fatal != nil {
				return true
			}
			l.batch = l.ready.n
		}
		for l.batch > 0 {
			h := l.ready.pop()
			l.batch-- // before the call: after a panic, batch is what remains
			if h.cancelled {
				continue
			}
			if h.ctx != nil && h.ctx.Err() != nil {
				h.cancelled = true
				continue
			}
			cur = h
			if l.debug {
				l.runTimed(h)
			} else if h.fn != nil {
				h.fn()
			} else if t, ok := h.run.(*taskState); ok {
				l.direct = true
				t.runHandle(h.arg)
			} else {
				h.run.runHandle(h.arg)
			}
			cur = nil
			l.release(h)
		}
		l.batch = -1
		if l.stopping || once {
			return true
		}
	}
}

// gather is phases 1 to 4 of an iteration: it polls the driver and moves
// ready I/O callbacks, signals, other goroutines' callbacks and due timers to
// the ready queue. See the package comment.
func (l *Loop) gather() {
	// 1. Drop cancelled timers at the head, and sweep if too many lie deeper.
	if len(l.timers) > minTimersForSweep && 2*l.cancelledTimers > len(l.timers) {
		l.timers.rebuild()
		l.cancelledTimers = 0
	}
	for len(l.timers) > 0 && l.timers[0].cancelled {
		l.timers.pop()
		l.cancelledTimers--
	}

	// 2. Poll with a timeout derived from the ready queue and the next timer.
	// While callbacks keep the loop busy, zero-timeout polls are rationed
	// (busyPollInterval), and the clock, which costs ~40 ns under a VM's
	// kvm-clock, is read only every busyClockIters iterations or
	// busyClockWork callbacks.
	var now time.Duration
	timeout, poll := time.Duration(-1), true
	switch {
	case l.stopping:
		timeout = 0
	case l.ready.n > 0:
		timeout = 0
		l.busyIters++
		l.busyWork += l.ready.n
		if l.busyIters < busyClockIters && l.busyWork < busyClockWork &&
			(len(l.timers) == 0 || l.timers[0].when-l.lastNow > timerSlack) {
			poll = false
		} else {
			now = l.Time()
			l.lastNow = now
			l.busyIters, l.busyWork = 0, 0
			poll = now-l.lastPoll >= max(l.pollEvery, busyPollInterval)
		}
	case len(l.timers) > 0 || len(l.unarmed) > 0:
		now = l.Time()
		l.lastNow = now
		l.arm(now) // before the poll's timeout is derived from the heap
		timeout = max(0, min(l.timers[0].when-now, maxSelectTimeout))
	}
	if poll {
		if timeout != 0 {
			l.sleeping.Store(true)
			if l.tsLen.Load() > 0 || l.sig.pending.Load() != 0 {
				timeout = 0
			}
		}
		n, err := l.drv.Poll(l.polled, timeout)
		l.sleeping.Store(false)
		// 3. Queue the I/O callbacks the driver returned (each in a
		// recycled handle, so this allocates nothing).
		for i, fn := range l.polled[:n] {
			l.ready.push(l.newHandle(fn))
			l.polled[i] = nil
		}
		if err != nil {
			l.driverFailed(err)
			return
		}
		before := now
		now = l.Time()
		l.lastNow = now
		if timeout == 0 && before != 0 {
			l.timePoll(now - before)
		}
		l.lastPoll, l.busyIters, l.busyWork = now, 0, 0
		l.yield.Tick(now)
	}

	// 3b. Signals and other goroutines' callbacks (checked here, inline,
	// because both are almost always absent).
	if l.sig.pending.Load() != 0 {
		l.sig.dispatch(l)
	}
	if l.tsLen.Load() > 0 {
		l.drainThreadsafe()
	}

	// 4. Move due timers to the ready queue (none is due if the clock was
	// not read: see timerSlack).
	if len(l.unarmed) > 0 && now != 0 {
		l.arm(now)
	}
	if len(l.timers) > 0 && now != 0 {
		for len(l.timers) > 0 && l.timers[0].when <= now {
			h := l.timers.pop()
			if h.cancelled {
				l.cancelledTimers--
				continue
			}
			l.ready.push(h)
		}
	}

}

// skipTurn is Co.Yield's shortcut: it reports whether the task yielding,
// whose step is the last callback of the batch with nothing queued behind
// it, may go on at once, because the next iteration would run nothing but
// that step: no other callback is ready, the loop is not stopping, no other
// goroutine's callback or signal waits, no timer can be due (timerSlack),
// and the poll and clock rationing of a busy loop (busyClockIters,
// busyClockWork) would neither poll nor read the clock. It then counts the
// iteration, so every busyClockIters-th yield still goes round the loop
// and polls as often as the loop would. Going round the loop to come
// straight back was two coroutine switches, about half of what a yield
// between two awaits cost (a Lock holder's await asyncio.sleep(0)). Debug
// mode, which times each callback, never skips.
func (l *Loop) skipTurn() bool {
	if l.batch != 0 || l.ready.n != 0 || l.stopping || l.debug ||
		l.busyIters+1 >= busyClockIters || l.busyWork+1 >= busyClockWork ||
		l.tsLen.Load() > 0 || l.sig.pending.Load() != 0 {
		return false
	}
	if len(l.timers) > 0 && l.timers[0].when-l.lastNow <= timerSlack {
		return false
	}
	l.busyIters++
	l.busyWork++
	return true
}

// timePoll folds the duration of a busy zero-timeout poll into the running
// cost (an exponential average over about eight polls, so that one poll
// delayed by a preemption cannot stretch the interval for long) and derives
// the rationing interval from it (see pollCostFactor).
func (l *Loop) timePoll(d time.Duration) {
	l.pollCost += (d - l.pollCost) / 8
	l.pollEvery = min(pollCostFactor*l.pollCost, maxBusyPollInterval)
}

// release recycles the handle of a callback that has run, unless it is
// persistent (reader, writer, signal) or was cancelled while it ran.
func (l *Loop) release(h *handle) {
	if h.persistent || h.cancelled {
		return
	}
	// Only the fields set are cleared: while the collector marks, every
	// pointer store pays a write barrier, nil or not, and most handles
	// carry a closure or a kernel callback and nothing else.
	if h.fn != nil {
		h.fn = nil
	}
	if h.run != nil {
		h.run, h.arg = nil, nil
	}
	if h.ctx != nil || h.stop != nil {
		if h.stop != nil {
			h.stop()
		}
		h.ctx, h.stop = nil, nil
	}
	h.gen++
	h.next, l.free = l.free, h
}

func (l *Loop) reportPanic(h *handle, r any) {
	l.CallExceptionHandler(ErrorContext{
		Message: "Exception in callback " + h.String(),
		Err:     newPanicError(r),
		Handle:  Handle{h, h.gen},
	})
}

// call runs one callback under its own recover; debug mode's timed path
// uses it so that a panic does not escape the timing.
func (l *Loop) call(h *handle) {
	defer func() {
		if r := recover(); r != nil {
			l.reportPanic(h, r)
		}
	}()
	if h.fn != nil {
		h.fn()
	} else {
		h.run.runHandle(h.arg)
	}
}

// newHandle takes a handle from the free list.
func (l *Loop) newHandle(fn func()) *handle {
	h := l.free
	if h != nil {
		l.free = h.next
		h.next = nil
	} else {
		h = &handle{loop: l, gen: 1, index: -1}
	}
	h.fn = fn
	if l.debug {
		h.src = callerPC()
	}
	return h
}

func (l *Loop) cancel(h *handle) {
	if h.cancelled {
		return
	}
	h.cancelled = true
	if h.stop != nil {
		h.stop()
	}
	if h.index >= 0 {
		l.cancelledTimers++
	}
}

// callLaterUnarmed is CallLater for a deadline the kernel keeps to itself
// (WaitFor's), delay > timerSlack: it reads no clock, but counts the delay
// from the loop's next clock reading (arm), which comes within
// busyClockIters busy iterations or busyClockWork callbacks, or before the
// loop blocks. The deadline is thus never early and late by at most what
// timerSlack already allows; and a WaitFor whose awaitable finishes in time,
// before that reading, costs neither a clock reading (~35 ns under
// kvm-clock, the largest part of its cost over a bare await) nor any heap
// work. dropTimer withdraws it.
func (l *Loop) callLaterUnarmed(delay time.Duration, fn func()) TimerHandle {
	h := l.newHandle(fn)
	h.when = delay
	l.timerSeq++
	h.seq = l.timerSeq
	h.index = unarmedIndex(len(l.unarmed))
	l.unarmed = append(l.unarmed, h)
	return TimerHandle{Handle{h, h.gen}, 0}
}

// unarmedIndex encodes slot i of Loop.unarmed in handle.index, below the
// -1 of a handle in no heap.
func unarmedIndex(i int) int { return -2 - i }

// arm puts the unarmed deadlines in the heap, counted from now.
func (l *Loop) arm(now time.Duration) {
	for i, h := range l.unarmed {
		h.when = deadline(now, h.when)
		l.timers.push(h)
		l.unarmed[i] = nil
	}
	l.unarmed = l.unarmed[:0]
}

// dropTimer cancels a timer whose TimerHandle the kernel never gave out
// (WaitFor's deadline), and recycles its handle at once if it is still in
// the heap: nobody can ask such a handle whether it was cancelled, which
// is what keeps a cancelled handle from being recycled. Cancelling left
// every far-off deadline of a WaitFor that met its awaitable in time to
// wait in the heap and cost a fresh handle per call. A timer already due
// (in the ready queue) is cancelled as usual.
func (l *Loop) dropTimer(th TimerHandle) {
	h := th.h
	if !th.live() || h.cancelled {
		return
	}
	switch {
	case h.index <= unarmedIndex(0):
		i := unarmedIndex(0) - h.index
		last := len(l.unarmed) - 1
		if i != last {
			m := l.unarmed[last]
			l.unarmed[i], m.index = m, unarmedIndex(i)
		}
		l.unarmed[last] = nil
		l.unarmed = l.unarmed[:last]
		h.index = -1
	case h.index < 0:
		l.cancel(h)
		return
	default:
		l.timers.remove(h.index)
	}
	l.release(h)
}

// CallSoon schedules fn to run on the next iteration, after the callbacks
// already scheduled (FIFO), including those other goroutines scheduled with
// CallSoonThreadsafe before this call; it runs exactly once unless
// cancelled. A nil fn fails with ErrNilCallback (asyncio raises TypeError
// when the callback is scheduled, not when it would run). Not thread-safe.
func (l *Loop) CallSoon(fn func()) (Handle, error) {
	if err := l.checkUsable(); err != nil {
		return Handle{}, fmt.Errorf("call soon: %w", err)
	}
	if fn == nil {
		return Handle{}, fmt.Errorf("call soon: %w", ErrNilCallback)
	}
	// One ready queue, as asyncio's: callbacks other goroutines queued
	// before this call go ahead of it. Almost always there are none, and the
	// check is one atomic load.
	if l.tsLen.Load() > 0 {
		l.drainThreadsafe()
	}
	h := l.newHandle(fn)
	l.ready.push(h)
	return Handle{h, h.gen}, nil
}

// callSoonRun is CallSoon for a kernel callback without a closure
// (handleRunner): r.runHandle(arg) runs on the next iteration, in the same
// FIFO as CallSoon's callbacks. Like the kernel's other internal CallSoon
// calls it does nothing on an unusable loop.
func (l *Loop) callSoonRun(r handleRunner, arg *futureCore) {
	if l.checkUsable() != nil {
		return
	}
	if l.tsLen.Load() > 0 {
		l.drainThreadsafe()
	}
	h := l.newHandle(nil)
	h.run, h.arg = r, arg
	l.ready.push(h)
}

// CallSoonContext is CallSoon with a context: fn receives ctx, and if ctx is
// done by the time the callback is due it is skipped as if cancelled.
func (l *Loop) CallSoonContext(ctx context.Context, fn func(context.Context)) (Handle, error) {
	if fn == nil {
		return Handle{}, fmt.Errorf("call soon: %w", ErrNilCallback)
	}
	h, err := l.CallSoon(func() { fn(ctx) })
	if err == nil {
		h.h.ctx = ctx
	}
	return h, err
}

// CallLater schedules fn to run after delay (a negative delay is due at
// once, in deadline order with other due timers). The deadline saturates:
// a delay past the end of the clock (math.MaxInt64) is due never in
// practice, not at once, and one before its start is due at once.
func (l *Loop) CallLater(delay time.Duration, fn func()) (TimerHandle, error) {
	return l.CallAt(deadline(l.Time(), delay), fn)
}

// deadline is now+delay saturated to [0, math.MaxInt64], so that no delay
// wraps round to a deadline on the wrong side of now.
func deadline(now, delay time.Duration) time.Duration {
	when := now + delay
	switch {
	case delay > 0 && when < now:
		return math.MaxInt64
	case when < 0:
		return 0
	}
	return when
}

// CallAt schedules fn to run when the loop clock (Time) reaches when. A
// deadline below zero, long past on the loop clock, is clamped to zero (due
// at once), so When is never negative and the distance from now to a
// deadline never overflows. A nil fn fails with ErrNilCallback.
func (l *Loop) CallAt(when time.Duration, fn func()) (TimerHandle, error) {
	if err := l.checkUsable(); err != nil {
		return TimerHandle{}, fmt.Errorf("call at: %w", err)
	}
	if fn == nil {
		return TimerHandle{}, fmt.Errorf("call at: %w", ErrNilCallback)
	}
	when = max(when, 0)
	h := l.newHandle(fn)
	h.when = when
	l.timerSeq++
	h.seq = l.timerSeq
	l.timers.push(h)
	return TimerHandle{Handle{h, h.gen}, when}, nil
}

// CallLaterContext is CallLater with a context: fn receives ctx, and
// cancelling ctx cancels the timer.
func (l *Loop) CallLaterContext(ctx context.Context, delay time.Duration, fn func(context.Context)) (TimerHandle, error) {
	return l.CallAtContext(ctx, deadline(l.Time(), delay), fn)
}

// CallAtContext is CallAt with a context, as CallLaterContext.
func (l *Loop) CallAtContext(ctx context.Context, when time.Duration, fn func(context.Context)) (TimerHandle, error) {
	if fn == nil {
		return TimerHandle{}, fmt.Errorf("call at: %w", ErrNilCallback)
	}
	th, err := l.CallAt(when, func() { fn(ctx) })
	if err != nil {
		return th, err
	}
	th.h.ctx = ctx
	// The context may be cancelled on any goroutine; the cancellation
	// reaches the timer through the thread-safe queue.
	hv := th.Handle
	th.h.stop = context.AfterFunc(ctx, func() {
		l.CallSoonThreadsafe(hv.Cancel)
	})
	return th, nil
}

// CallSoonThreadsafe is CallSoon for any goroutine: it wakes the loop if it
// is blocked polling its driver. Callbacks scheduled with it and with
// CallSoon run in the order the calls were made, as through asyncio's one
// ready queue. A nil fn fails with ErrNilCallback.
func (l *Loop) CallSoonThreadsafe(fn func()) (Handle, error) {
	if fn == nil {
		return Handle{}, fmt.Errorf("call soon threadsafe: %w", ErrNilCallback)
	}
	h := &handle{loop: l, gen: 1, index: -1, fn: fn}
	if err := l.pushThreadsafe(h); err != nil {
		return Handle{}, err
	}
	// Not h.gen: the loop may already have run and recycled h.
	return Handle{h, 1}, nil
}

// CallSoonThreadsafeContext is CallSoonThreadsafe with a context, as
// CallSoonContext.
func (l *Loop) CallSoonThreadsafeContext(ctx context.Context, fn func(context.Context)) (Handle, error) {
	if fn == nil {
		return Handle{}, fmt.Errorf("call soon threadsafe: %w", ErrNilCallback)
	}
	h := &handle{loop: l, gen: 1, index: -1, fn: func() { fn(ctx) }, ctx: ctx}
	if err := l.pushThreadsafe(h); err != nil {
		return Handle{}, err
	}
	return Handle{h, 1}, nil
}

func (l *Loop) pushThreadsafe(h *handle) error {
	l.tsMu.Lock()
	if l.closed.Load() {
		l.tsMu.Unlock()
		return fmt.Errorf("call soon threadsafe: %w", ErrClosed)
	}
	l.tsQueue = append(l.tsQueue, h)
	l.tsLen.Add(1)
	l.tsMu.Unlock()
	if l.sleeping.Load() {
		l.wake()
	}
	return nil
}

func (l *Loop) wake() {
	if err := l.drv.Wake(); err != nil && !l.closed.Load() {
		l.logger.Warn("waking the I/O driver failed", "error", err)
	}
}

func (l *Loop) drainThreadsafe() {
	l.tsMu.Lock()
	q := l.tsQueue
	l.tsQueue = l.tsSpare[:0]
	l.tsLen.Store(0)
	l.tsMu.Unlock()
	for i, h := range q {
		l.ready.push(h)
		q[i] = nil
	}
	l.tsSpare = q[:0]
}

// driverFailed ends the run: a back-end that cannot wait any more leaves
// the loop unable to keep any of its promises, so the error is reported and
// RunForever returns it.
func (l *Loop) driverFailed(err error) {
	c := l.drv.Capabilities()
	err = fmt.Errorf("%s %s failed: %w", c.Family, c.Backend, err)
	l.fatal = err
	l.CallExceptionHandler(ErrorContext{Message: c.Family + " failed; stopping the event loop", Err: err})
}
