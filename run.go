// Package loopkernel is the entry point of a program written on loopkernel's
// event loop, as asyncio.run is of an asyncio program:
//
//	func main() {
//		n, err := loopkernel.Run(context.Background(), func(co *kernel.Co) (int, error) {
//			... // the program, as a coroutine on the loop
//		})
//	}
//
// Run builds the loop from the policy the environment names
// ($LOOPKERNEL_POLICY and the per-family $LOOPKERNEL_SELECTOR,
// $LOOPKERNEL_RESOLVER, $LOOPKERNEL_EXECUTOR, as the loopkernel command
// honours them), runs the main coroutine, and tears everything down in
// asyncio's order. Importing this package also makes the program able to
// serve loopkernel's bundled back-ends when a plugin policy re-executes it.
//
// It owns nothing but that sequence: the loop is kernel's, the recipes are
// policy's, the plugin machinery is sdk/plugin's.
package loopkernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/policy"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// A plugin policy (epoll-plugin, --selector plugin:poll, ...) runs its
// back-end in a copy of the program's own executable, started with no
// arguments. That copy must serve the back-end before the program does
// anything of its own (a line printed on stdout would break the plugin
// handshake), so serving happens here, in package initialisation, before
// main runs; the back-ends registered by the bundled plugins' init
// functions, which run first, are what it serves. In any other process
// this returns at once.
func init() { plugin.ServeBundled() }

// ErrInterrupted is what the main coroutine's cancellation wraps when a
// signal caught by Run (SIGINT, SIGTERM by default) ended it.
var ErrInterrupted = errors.New("interrupted by a signal")

// DefaultShutdownTimeout bounds how long Run waits for the default
// executor's running functions at shutdown (asyncio's THREAD_JOIN_TIMEOUT
// is 300 s; Go programs are usually stopped by a supervisor that will not
// wait that long).
const DefaultShutdownTimeout = 30 * time.Second

// Option configures Run.
type Option func(*config)

type config struct {
	policy   *policy.Policy
	flags    policy.Flags
	signals  []os.Signal
	loopOpts []kernel.Option
	shutdown time.Duration
}

// WithPolicy runs the loop on p instead of the one the environment names.
func WithPolicy(p *policy.Policy) Option { return func(c *config) { c.policy = p } }

// WithFlags passes command-line choices (--policy, --selector, --resolver,
// --executor) to policy.Choose; an empty field falls back to its
// environment variable, as in the loopkernel command.
func WithFlags(f policy.Flags) Option { return func(c *config) { c.flags = f } }

// WithSignals sets the signals that cancel the main coroutine (default
// SIGINT and SIGTERM; none: Run leaves signals alone). The first one
// cancels the main task, whose cancellation wraps ErrInterrupted; catching
// then stops, so a second one has its default effect (a program stuck in
// its clean-up can still be interrupted), as with signal.NotifyContext.
// asyncio.Runner does the same for SIGINT; SIGTERM is what service
// managers and container runtimes send.
func WithSignals(sigs ...os.Signal) Option {
	return func(c *config) { c.signals = append([]os.Signal(nil), sigs...) }
}

// WithLoopOptions adds options to the loop's construction (a logger,
// kernel.WithDebug as asyncio.run's debug=).
func WithLoopOptions(opts ...kernel.Option) Option {
	return func(c *config) { c.loopOpts = append(c.loopOpts, opts...) }
}

// WithShutdownTimeout bounds the wait for the default executor at shutdown
// (DefaultShutdownTimeout if not given); past it Run logs a warning and
// closes the loop without waiting.
func WithShutdownTimeout(d time.Duration) Option { return func(c *config) { c.shutdown = d } }

// Run runs main as the main task of a new event loop and returns its result
// (asyncio.run). In order it:
//
//   - builds the loop from WithPolicy's policy, else from policy.Choose
//     (flags given with WithFlags, then the environment, then the default);
//   - runs main as a task until it returns; ctx ending, or a signal
//     (WithSignals), cancels that task, with the cause as its message;
//   - cancels the tasks still pending and runs the loop until they end
//     (Loop.CancelAllTasks);
//   - finalises the async generators still open (Loop.ShutdownAsyncGens)
//     and shuts down the default executor, waiting for its running
//     functions (Loop.ShutdownDefaultExecutor, bounded by
//     WithShutdownTimeout);
//   - closes the loop, which closes its back-ends and plugin processes.
//
// When the main task was cancelled because ctx ended or a signal came, the
// error wraps the cause (context.Canceled, context.DeadlineExceeded,
// ErrInterrupted) as well as kernel.ErrCancelled. Run cannot be called from
// a goroutine running a loop, nor from a coroutine (kernel.ErrRunning).
func Run[T any](ctx context.Context, main func(co *kernel.Co) (T, error), opts ...Option) (T, error) {
	var zero T
	plugin.ServeBundled() // done in init already; harmless, and explicit
	if kernel.RunningLoop() != nil {
		return zero, fmt.Errorf("loopkernel.Run cannot be called from a running event loop: %w", kernel.ErrRunning)
	}
	if main == nil {
		return zero, fmt.Errorf("loopkernel.Run: %w", kernel.ErrNilCallback)
	}
	cfg := config{signals: []os.Signal{os.Interrupt, syscall.SIGTERM}, shutdown: DefaultShutdownTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	p := cfg.policy
	if p == nil {
		var err error
		if p, err = policy.Choose(cfg.flags); err != nil {
			return zero, fmt.Errorf("loopkernel.Run: %w", err)
		}
	} else {
		clone := *p
		p = &clone
	}
	p.Options = append(append([]kernel.Option(nil), p.Options...), cfg.loopOpts...)

	// runCtx ends with ctx or at the first caught signal, and its cause is
	// what cancels the main task.
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if len(cfg.signals) > 0 {
		stop := catchSignals(cfg.signals, cancel)
		defer stop()
	}

	loop, err := p.NewEventLoopContext(runCtx)
	if err != nil {
		return zero, fmt.Errorf("loopkernel.Run: %w", err)
	}
	defer loop.Close()

	task, err := kernel.CreateTask(loop, main)
	if err != nil {
		return zero, fmt.Errorf("loopkernel.Run: %w", err)
	}
	stopWatch := context.AfterFunc(runCtx, func() {
		msg := context.Cause(runCtx).Error()
		loop.CallSoonThreadsafe(func() { task.CancelMsg(msg) })
	})
	runErr := loop.RunUntilComplete(task)
	stopWatch()

	shutErr := shutdown(loop, cfg.shutdown)
	if err := loop.Close(); err != nil {
		shutErr = errors.Join(shutErr, fmt.Errorf("closing the loop: %w", err))
	}

	v, err := task.Result()
	switch {
	case !task.Done():
		// The loop stopped (Loop.Stop, a failed back-end) before main
		// returned: asyncio raises "Event loop stopped before Future
		// completed".
		err = fmt.Errorf("loopkernel.Run: %w", runErr)
	case task.Cancelled() && runCtx.Err() != nil:
		err = fmt.Errorf("loopkernel.Run: main coroutine cancelled: %w: %w", context.Cause(runCtx), err)
	}
	if shutErr != nil {
		err = errors.Join(err, fmt.Errorf("loopkernel.Run: shutdown: %w", shutErr))
	}
	return v, err
}

// shutdown is asyncio.Runner.close before loop.close: cancel what is left,
// finalise async generators, then shut the default executor down, waiting
// at most timeout for it.
func shutdown(loop *kernel.Loop, timeout time.Duration) error {
	var errs []error
	if err := loop.CancelAllTasks(); err != nil {
		errs = append(errs, err)
	}
	if gens, err := loop.ShutdownAsyncGens(); err != nil {
		errs = append(errs, err)
	} else if err := loop.RunUntilComplete(gens); err != nil {
		errs = append(errs, fmt.Errorf("shutdown async generators: %w", err))
	}
	ex, err := loop.ShutdownDefaultExecutor()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	if !ex.Done() {
		th, err := loop.CallLater(timeout, loop.Stop)
		if err == nil {
			err = loop.RunUntilComplete(ex)
			th.Cancel()
		}
		if errors.Is(err, kernel.ErrStoppedBeforeDone) {
			loop.Logger().Warn("the default executor did not finish its running functions in time; closing the loop without them", "timeout", timeout)
		} else if err != nil {
			errs = append(errs, fmt.Errorf("shutdown default executor: %w", err))
		}
	}
	return errors.Join(errs...)
}

// catchSignals cancels with ErrInterrupted at the first of sigs, after
// which it stops catching them. The returned function stops it.
func catchSignals(sigs []os.Signal, cancel context.CancelCauseFunc) (stop func()) {
	ch := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(ch, sigs...)
	go func() {
		select {
		case s := <-ch:
			signal.Stop(ch)
			cancel(fmt.Errorf("%v: %w", s, ErrInterrupted))
		case <-done:
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
