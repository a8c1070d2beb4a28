package executor

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// ProcessName is the name the process pool is registered under in
// sdk.Executors: `--executor process`, or Policy.Executor = "process".
const ProcessName = "process"

func init() {
	sdk.Executors.Register(ProcessName, func() (sdk.Executor, error) {
		return NewPool(context.Background(), PoolOptions{})
	})
}

// ErrQueueFull is wrapped by the error of a call refused because the pool's
// queue was full and PoolOptions.FailFast asked not to wait.
var ErrQueueFull = errors.New("process pool: queue full")

// PoolOptions configure a process pool. Zero values take the defaults
// listed.
type PoolOptions struct {
	// Workers is the number of worker processes. Default: the number of
	// CPUs (Python's ProcessPoolExecutor's default too).
	Workers int
	// MaxTasksPerWorker retires a worker once it has run this many calls
	// and starts a fresh one in its place (Python's max_tasks_per_child),
	// for functions that leak. 0: never.
	MaxTasksPerWorker int
	// Queue bounds the calls that may wait for a worker while every worker
	// is busy. A call that finds the queue full waits for room (its context
	// bounds the wait), or, with FailFast, fails at once with an error
	// wrapping ErrQueueFull: either way the caller feels the pressure
	// rather than the pool's memory. 0: no bound, as in Python.
	Queue    int
	FailFast bool
	// Grace is how long a call its caller abandoned (context cancelled or
	// past its deadline while running) may keep its worker: the function's
	// context is cancelled at once, and a worker still running it after
	// Grace is stopped and replaced. Default 1s.
	Grace time.Duration
	// CallTimeout is the deadline of a call whose context has none.
	// 0: none.
	CallTimeout time.Duration
	// MemoryLimit caps each worker's data segment (RLIMIT_DATA, which
	// covers the Go heap) in bytes: a function that allocates past it
	// kills only its worker ("fatal error: out of memory", exit status 2),
	// and the call fails saying so. 0: no limit beyond the process's own.
	MemoryLimit int64
	// WorkerProcs is each worker's GOMAXPROCS. Default 2: a worker runs one
	// call at a time on its channel's goroutine, and the second P keeps
	// the call plane (health pings, cancellation) answered while that
	// call builds a large result; with one, a worker building 100 MiB was
	// seen to miss its ping deadline and be killed as hung. Negative: Go's
	// default (the number of CPUs), for functions that spread one call
	// over goroutines.
	WorkerProcs int
	// ShmThreshold: an argument or result of at least this many bytes
	// travels through the worker's shared memory (a memfd) instead of the
	// worker channel's socket. Default 256 KiB; negative: never (arguments
	// and results are then limited to the channel's 64 MiB).
	ShmThreshold int
	// Worker is the template of each worker process's plugin.Spec
	// (Logger, StartTimeout, StopTimeout, ReplyTimeout, Path for a
	// third-party executor plugin). Name defaults to sdk.DefaultExecutor,
	// the bundled goroutine executor run by re-executing this program;
	// the restart fields are ignored, since the pool replaces its workers
	// itself.
	Worker plugin.Spec
}

// Defaults, exported through PoolOptions' documentation.
const (
	defaultGrace        = time.Second
	defaultShmThreshold = 256 << 10
	// retainShm is how much of a worker's shared memory is kept between
	// calls; a larger argument or result is released after its call.
	retainShm = 4 << 20
	// maxLaunchFailures is how many starts in a row may fail for one
	// worker slot before the slot is given up.
	maxLaunchFailures = 5
)

func (o PoolOptions) withDefaults() PoolOptions {
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	if o.WorkerProcs == 0 {
		o.WorkerProcs = 2
	}
	if o.Grace <= 0 {
		o.Grace = defaultGrace
	}
	if o.ShmThreshold == 0 {
		o.ShmThreshold = defaultShmThreshold
	}
	if o.Worker.Name == "" && o.Worker.Path == "" {
		o.Worker.Name = sdk.DefaultExecutor
	}
	if o.Worker.Logger == nil {
		o.Worker.Logger = hclog.NewNullLogger()
	}
	o.Worker.MaxRestarts = -1
	o.Worker.Standby = false
	return o
}

// Pool is a process-pool executor, asyncio's run_in_executor with a
// ProcessPoolExecutor: registered functions (sdk.NewFunc) run in worker
// processes that are this program re-executed, one call at a time per
// worker. Each worker is a supervised plugin process (sdk/plugin) serving
// the bundled goroutine executor; its calls travel on a socket of their own,
// the worker channel (pool_chan.go), with no goroutine hand-off on either
// side, and the call plane carries only its start, cancellations and
// health pings. A loop does not even block a goroutine on a call: it starts
// the call on its own goroutine (StartCall, sdk.CallStarter) and reads the
// answer when its poller sees the channel readable.
//
// A worker that dies during a call (a panic on another goroutine, os.Exit,
// out of memory, a signal) fails that call only, with an error wrapping
// sdk.ErrBackendDied that gives the worker's pid and exit status; the
// worker is replaced and the pool goes on, unlike Python's, which breaks
// whole (BrokenProcessPool). A panic in the function itself is recovered
// in the worker and is the call's *sdk.CallError.
//
// Calls wait in FIFO order for a free worker. A call whose context ends
// before a worker takes it never starts; one that ends while running is
// abandoned: the caller gets the context's error at once, the function's
// context is cancelled in the worker, and the worker is replaced if the
// function is still running after PoolOptions.Grace.
type Pool struct {
	opts PoolOptions

	admit chan struct{} // a token per admitted call; nil without a Queue bound
	idle  chan *worker  // workers waiting for a call

	life    context.Context // cancelled by Close
	cancel  context.CancelFunc
	closing int            // eventfd written by Close: wakes whoever waits on a worker channel
	bg      sync.WaitGroup // replacements and settlings under way
	calls   sync.WaitGroup // calls in Call (enter)

	mu      sync.Mutex
	closed  bool
	workers map[*worker]struct{} // every worker started and not yet stopped
	slots   int                  // worker slots not given up
	broken  error                // set when the last slot was given up
	brokenC chan struct{}        // closed with broken
}

var _ sdk.Executor = (*Pool)(nil)

// NewPool starts a pool of opts.Workers processes, all at once; ctx bounds
// their start. It fails if any worker fails to start.
func NewPool(ctx context.Context, opts PoolOptions) (*Pool, error) {
	opts = opts.withDefaults()
	p := &Pool{
		opts:    opts,
		idle:    make(chan *worker, opts.Workers),
		workers: make(map[*worker]struct{}),
		slots:   opts.Workers,
		brokenC: make(chan struct{}),
		closing: -1,
	}
	var err error
	if p.closing, err = newEventfd(); err != nil {
		return nil, err
	}
	if opts.Queue > 0 {
		p.admit = make(chan struct{}, opts.Workers+opts.Queue)
	}
	p.life, p.cancel = context.WithCancel(context.Background())
	errs := make(chan error, opts.Workers)
	for range opts.Workers {
		go func() {
			w, err := p.launch(ctx)
			if err == nil {
				p.idle <- w
			}
			errs <- err
		}()
	}
	for range opts.Workers {
		err = errors.Join(err, <-errs)
	}
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("process pool: starting %d workers: %w", opts.Workers, err)
	}
	return p, nil
}

// Workers is the number of worker processes the pool keeps.
func (p *Pool) Workers() int { return p.opts.Workers }

// Call runs the function registered under fn in a worker (sdk.Executor).
func (p *Pool) Call(ctx context.Context, fn string, arg []byte) ([]byte, error) {
	if _, ok := sdk.LookupFunc(fn); !ok || len(fn) > maxNameLen {
		return nil, fmt.Errorf("process pool: call %q: %w", fn, sdk.ErrUnknownFunc)
	}
	if p.opts.CallTimeout > 0 {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, p.opts.CallTimeout)
			defer cancel()
		}
	}
	if err := p.usable(fn); err != nil {
		return nil, err
	}
	if err := p.enter(fn); err != nil {
		return nil, err
	}
	defer p.calls.Done()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("process pool: call %q: not started: %w", fn, err)
	}
	if p.admit != nil {
		select {
		case p.admit <- struct{}{}:
		default:
			if p.opts.FailFast {
				return nil, fmt.Errorf("process pool: call %q: %d workers busy and %d calls queued: %w",
					fn, p.opts.Workers, p.opts.Queue, ErrQueueFull)
			}
			select {
			case p.admit <- struct{}{}:
			case <-ctx.Done():
				return nil, fmt.Errorf("process pool: call %q: not started (queue full): %w", fn, ctx.Err())
			case <-p.life.Done():
				return nil, p.usable(fn)
			}
		}
		defer func() { <-p.admit }()
	}
	for {
		var w *worker
		select {
		case w = <-p.idle:
		case <-ctx.Done():
			return nil, fmt.Errorf("process pool: call %q: not started: %w", fn, ctx.Err())
		case <-p.life.Done():
			return nil, p.usable(fn)
		case <-p.brokenC:
			return nil, p.usable(fn)
		}
		if err := ctx.Err(); err != nil {
			// Both were ready and select chose the worker: the caller
			// gave up first, so the call does not start.
			p.idle <- w
			return nil, fmt.Errorf("process pool: call %q: not started: %w", fn, err)
		}
		res, err, sent := p.run(ctx, w, fn, arg)
		if sent {
			return res, err
		}
	}
}

// usable is nil while the pool takes calls, else the error a call gets.
func (p *Pool) usable(fn string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return fmt.Errorf("process pool: call %q: %w", fn, sdk.ErrExecutorClosed)
	case p.broken != nil:
		return fmt.Errorf("process pool: call %q: %w", fn, p.broken)
	}
	return nil
}

// run sends one call to w over its channel, waits for the answer, and
// hands w on: back to the idle workers, to a settling (abandoned call) or
// to a replacement (dead, worn out, or breaking the channel's rules). sent
// is false when w had died before the call reached it; the call then goes
// to another worker.
func (p *Pool) run(ctx context.Context, w *worker, fn string, arg []byte) (res []byte, err error, sent bool) {
	msg, err := w.envelope(ctx, fn, arg, p.opts.ShmThreshold)
	if err != nil {
		p.release(w, false)
		return nil, fmt.Errorf("process pool: call %q: %w", fn, err), true
	}
	w.ch.seq++
	seq := w.ch.seq
	if err := w.ch.send(kindCall, seq, msg); err != nil {
		if p.life.Err() != nil {
			return nil, fmt.Errorf("process pool: call %q: %w", fn, sdk.ErrExecutorClosed), true
		}
		p.replace(w)
		if errors.Is(err, errPeerGone) {
			// The worker had died before this call: a worker reads a
			// call whole before it runs it, so this one never ran.
			return nil, nil, false
		}
		return nil, fmt.Errorf("process pool: call %q: worker %d: %w", fn, w.pid, err), true
	}
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, w.ch.signalCancel)
	}
	raw, err := w.ch.receive(seq, true, time.Time{})
	if stop != nil && !stop() {
		w.ch.drainCancel()
	}
	switch {
	case errors.Is(err, errClosing):
		// Close stops w once its callers are out.
		return nil, fmt.Errorf("process pool: call %q: %w", fn, sdk.ErrExecutorClosed), true
	case errors.Is(err, errCancelled):
		p.settle(w, seq)
		return nil, fmt.Errorf("process pool: call %q: abandoned: %w", fn, ctx.Err()), true
	}
	res, err = p.conclude(w, fn, raw, err)
	return res, err, true
}

// conclude turns what came back from w's channel for a call of fn (an
// answer, or the error of reading one) into the call's result or error, and
// hands w on: back to the idle workers, or to a replacement when it died or
// broke the channel's rules. Both Call and a started call (pool_start.go)
// end here.
func (p *Pool) conclude(w *worker, fn string, raw []byte, err error) ([]byte, error) {
	switch {
	case err == nil:
		res, err := w.result(fn, raw, true)
		if errors.Is(err, errMalformed) {
			p.replace(w)
			return nil, fmt.Errorf("process pool: call %q: worker %d broke the channel's rules, so it is replaced: %w", fn, w.pid, err)
		}
		p.release(w, true)
		return res, err
	case errors.Is(err, errPeerGone):
		if p.life.Err() != nil {
			return nil, fmt.Errorf("process pool: call %q: %w", fn, sdk.ErrExecutorClosed)
		}
		died := w.rx.Died()
		p.replace(w)
		return nil, fmt.Errorf("process pool: call %q: %w", fn, died)
	}
	p.replace(w)
	return nil, fmt.Errorf("process pool: call %q: worker %d, replaced: %w", fn, w.pid, err)
}

// release returns w to the idle workers after a call, or retires it if it
// has run its share.
func (p *Pool) release(w *worker, counted bool) {
	w.trim()
	if counted {
		w.tasks++
	}
	if p.opts.MaxTasksPerWorker > 0 && w.tasks >= p.opts.MaxTasksPerWorker {
		p.replace(w)
		return
	}
	p.idle <- w // never blocks: there are never more workers than slots
}

// settle, off the caller's goroutine, tells w to cancel the call seq its
// caller abandoned (through the call plane: the worker's channel goroutine
// is busy running it), waits for that call's answer, and replaces w if it
// does not come within the grace period.
func (p *Pool) settle(w *worker, seq uint32) {
	p.background(func() {
		deadline := time.Now().Add(p.opts.Grace)
		ctx, cancel := context.WithDeadline(p.life, deadline)
		var b [4]byte
		le.PutUint32(b[:], seq)
		_, cerr := w.rx.Call(ctx, cancelFuncName, b[:])
		cancel()
		raw, err := w.ch.receive(seq, false, deadline)
		if err == nil {
			// The function's own error (most often the context's, which
			// it honoured) settles the call as well as a result does:
			// only an answer that breaks the channel's rules does not.
			if _, rerr := w.result("", raw, false); errors.Is(rerr, errMalformed) {
				err = rerr
			}
		}
		switch {
		case err == nil:
			p.release(w, true)
			return
		case errors.Is(err, errClosing):
			return // Close stops w
		}
		if p.life.Err() == nil {
			p.opts.Worker.Logger.Debug("process pool: abandoned call not settled within its grace; replacing the worker",
				"grace", p.opts.Grace, "pid", w.pid, "error", err, "cancel_error", cerr)
		}
		p.replace(w)
	})
	// Once closed, w stays in p.workers, and Close stops it.
}

// background runs f on a goroutine that Close waits for, unless the pool
// is closed already; it reports whether f will run. Taking p.mu orders
// every Add before Close's Wait.
func (p *Pool) background(f func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		f()
	}()
	return true
}

// Close stops every worker. Calls in flight fail with an error wrapping
// sdk.ErrExecutorClosed, and so do later ones.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return fmt.Errorf("process pool: %w", sdk.ErrExecutorClosed)
	}
	p.closed = true
	p.mu.Unlock()
	eventfdWrite(p.closing) // wakes the callers and settlings waiting on a channel
	p.cancel()
	p.bg.Wait()    // replacements see the cancel and stop what they started
	p.calls.Wait() // no caller uses a worker's channel any more
	p.mu.Lock()
	var ws, held []*worker
	for w := range p.workers {
		if w.held {
			// A started call's caller watches this channel: wake it
			// (shutdown makes the socket readable) and leave the
			// descriptor to that call, which releases it when it ends.
			_ = unix.Shutdown(w.ch.fd, unix.SHUT_RDWR)
			held = append(held, w)
			continue
		}
		ws = append(ws, w)
	}
	p.workers = nil
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(w.stop)
	}
	for _, w := range held {
		wg.Go(w.stopProcess)
	}
	wg.Wait()
	_ = unix.Close(p.closing)
	return nil
}

// enter counts a call in, unless the pool is closed: Close waits for the
// calls counted in to leave before it releases their workers' channels.
func (p *Pool) enter(fn string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("process pool: call %q: %w", fn, sdk.ErrExecutorClosed)
	}
	p.calls.Add(1)
	return nil
}
