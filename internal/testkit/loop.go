package testkit

import (
	"errors"

	"github.com/loopkernel/loopkernel/kernel"
	_ "github.com/loopkernel/loopkernel/plugins/selector" // the bundled back-ends, by name
	"github.com/loopkernel/loopkernel/sdk"
)

// DefaultBackend is the back-end NewLoop uses when asked for "".
const DefaultBackend = "epoll"

// NewLoop returns a loop on a new selector of the back-end registered as
// backend ("" for DefaultBackend), closed when t ends.
func NewLoop(t T, backend string, opts ...kernel.Option) *kernel.Loop {
	t.Helper()
	if backend == "" {
		backend = DefaultBackend
	}
	sel, err := sdk.Selectors.New(backend)
	if err != nil {
		fatal(t, "selector "+backend, err)
	}
	return LoopOn(t, sel, opts...)
}

// LoopOn returns a loop that owns sel, closed when t ends. A test that
// closes the loop itself may; closing it again is not an error.
func LoopOn(t T, sel sdk.Selector, opts ...kernel.Option) *kernel.Loop {
	t.Helper()
	l := kernel.New(sel, opts...)
	t.Cleanup(func() {
		if err := l.Close(); err != nil && !errors.Is(err, kernel.ErrClosed) {
			t.Errorf("testkit: closing the loop at the end of the test: %v", err)
		}
	})
	return l
}
