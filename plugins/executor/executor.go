// Package executor holds the bundled back-ends of the executor family
// (sdk.Executor): the in-process goroutine executor, registered as
// sdk.DefaultExecutor ("goroutine"), and the process pool, registered as
// ProcessName ("process"). Served out of process (sdk/plugin), the goroutine
// executor runs registered functions in a worker process, so a crash there
// cannot take the host down; the pool is several such workers, one call
// each, replaced when they die (docs/executor.md).
//
// It imports sdk and sdk/plugin (the pool launches its workers as
// supervised plugins), never the kernel.
package executor

import (
	"context"
	"fmt"
	"sync"

	"github.com/loopkernel/loopkernel/sdk"
)

func init() {
	sdk.Executors.Register(sdk.DefaultExecutor, func() (sdk.Executor, error) { return NewGoroutine(), nil })
}

// Goroutine runs each call of a registered function on a goroutine of its
// own in this process. The kernel already bounds how many calls wait at once
// (they wait on its default executor), so this one adds no second limit.
type Goroutine struct {
	mu     sync.Mutex
	closed bool
	done   chan struct{} // closed by Close: abandons the calls in flight
}

var _ sdk.Executor = (*Goroutine)(nil)

// NewGoroutine returns an in-process executor of registered functions.
func NewGoroutine() *Goroutine { return &Goroutine{done: make(chan struct{})} }

type result struct {
	b   []byte
	err error
}

// Call runs the function registered under fn (sdk.RunFunc) and waits for
// it, for ctx to be cancelled, or for Close. A function that ignores its
// context keeps running after an abandoned wait; its result is dropped.
func (g *Goroutine) Call(ctx context.Context, fn string, arg []byte) ([]byte, error) {
	g.mu.Lock()
	closed := g.closed
	g.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("call %q: %w", fn, sdk.ErrExecutorClosed)
	}
	if _, ok := sdk.LookupFunc(fn); !ok {
		return nil, fmt.Errorf("call %q: %w", fn, sdk.ErrUnknownFunc)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("call %q: not started: %w", fn, err) // asyncio: a cancelled future never runs
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan result, 1)
	go func() {
		b, err := sdk.RunFunc(ctx, fn, arg)
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("call %q: %w", fn, ctx.Err())
	case <-g.done:
		return nil, fmt.Errorf("call %q: %w", fn, sdk.ErrExecutorClosed)
	}
}

// Close fails the calls in flight and every later one with
// sdk.ErrExecutorClosed; the functions' contexts are cancelled.
func (g *Goroutine) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed = true
		close(g.done)
	}
	return nil
}
