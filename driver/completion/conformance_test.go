package completion_test

import (
	"testing"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/driver/completion"
	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/plugins/proactor"
	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// newUring builds the completion driver over a new io_uring proactor, or
// skips the test naming why io_uring is refused here.
func newUring(t testing.TB) func() (sdk.Driver, error) {
	t.Helper()
	testkit.NeedUring(t)
	return func() (sdk.Driver, error) {
		p, err := proactor.New()
		if err != nil {
			return nil, err
		}
		d, err := completion.New(p)
		if err != nil {
			p.Close()
			return nil, err
		}
		return d, nil
	}
}

// TestNetConformance runs the networking contract on the io_uring
// completion driver in process, plain and in debug mode.
func TestNetConformance(t *testing.T) {
	drv := newUring(t)
	t.Run("plain", func(t *testing.T) {
		conformance.RunNet(t, selector.NewEpoll, conformance.NetConfig{Driver: drv})
	})
	t.Run("debug", func(t *testing.T) {
		conformance.RunNet(t, selector.NewEpoll, conformance.NetConfig{Driver: drv, Debug: true})
	})
}

// TestKernelConformance runs the kernel contract (callbacks, timers,
// futures, tasks, handlers, descriptor watching through POLL_ADD) on loops
// built on the io_uring completion driver, plain and in debug mode.
func TestKernelConformance(t *testing.T) {
	drv := newUring(t)
	t.Run("plain", func(t *testing.T) {
		conformance.RunKernel(t, selector.NewEpoll, conformance.KernelConfig{Driver: drv})
	})
	t.Run("debug", func(t *testing.T) {
		conformance.RunKernel(t, selector.NewEpoll, conformance.KernelConfig{Driver: drv, Debug: true})
	})
}
