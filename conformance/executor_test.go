package conformance_test

import (
	"context"
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/plugins/executor"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// TestExecutors certifies every executor back-end and placement: the
// goroutine executor in process and in a plugin process, and the process
// pool. -short keeps the in-process placement only.
func TestExecutors(t *testing.T) {
	start := func(spec string) func() (sdk.Executor, error) {
		return func() (sdk.Executor, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return plugin.Open(ctx, sdk.Executors, spec, plugin.Options{})
		}
	}
	pool := func(opts executor.PoolOptions) func() (sdk.Executor, error) {
		return func() (sdk.Executor, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return executor.NewPool(ctx, opts)
		}
	}
	subjects := []conformance.ExecutorConfig{
		{Name: sdk.DefaultExecutor, New: start(sdk.DefaultExecutor), Caps: conformance.ExecutorCaps{LargePayloads: true}},
		{Name: "plugin:" + sdk.DefaultExecutor, New: start("plugin:" + sdk.DefaultExecutor),
			Caps: conformance.ExecutorCaps{Isolated: true}},
		{Name: executor.ProcessName, New: pool(executor.PoolOptions{Workers: 2, Queue: 2, Grace: 300 * time.Millisecond}),
			Caps: conformance.ExecutorCaps{Isolated: true, Workers: 2, Capacity: 4, Grace: 300 * time.Millisecond, LargePayloads: true}},
		{Name: executor.ProcessName + "-fail-fast", New: pool(executor.PoolOptions{Workers: 1, Queue: 1, FailFast: true, Grace: 300 * time.Millisecond}),
			Caps: conformance.ExecutorCaps{Isolated: true, Workers: 1, Capacity: 2, FailFast: true, Grace: 300 * time.Millisecond, LargePayloads: true}},
	}
	for _, s := range subjects {
		t.Run(s.Name, func(t *testing.T) {
			if testing.Short() && s.Name != sdk.DefaultExecutor {
				t.Skip("-short: no worker processes")
			}
			conformance.RunExecutor(t, s)
		})
	}
}
