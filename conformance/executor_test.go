package conformance_test

import (
	"context"
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/plugins/executor"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// TestExecutors certifies every executor back-end and placement, bound as
// `loopkernel conformance --suite executor` binds them: the goroutine
// executor in process and in a plugin process, and the process pool; and
// the pool once more failing fast when its queue is full. -short keeps the
// in-process placement only.
func TestExecutors(t *testing.T) {
	var subjects []conformance.ExecutorConfig
	for _, spec := range []string{sdk.DefaultExecutor, "plugin:" + sdk.DefaultExecutor, executor.ProcessName} {
		if testing.Short() && spec != sdk.DefaultExecutor {
			continue
		}
		cfg, err := conformance.ExecutorBinding(spec, plugin.Options{})
		if err != nil {
			t.Fatal(err)
		}
		subjects = append(subjects, cfg)
	}
	const grace = 300 * time.Millisecond
	subjects = append(subjects, conformance.ExecutorConfig{
		Name: executor.ProcessName + "-fail-fast",
		New: func() (sdk.Executor, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return executor.NewPool(ctx, executor.PoolOptions{Workers: 1, Queue: 1, FailFast: true, Grace: grace})
		},
		Caps: conformance.ExecutorCaps{Isolated: true, Workers: 1, Capacity: 2, FailFast: true, Grace: grace, LargePayloads: true},
	})
	// The pool's started calls (sdk.CallStarter, what a loop's CallFunc
	// uses), held to the same contract as its Call.
	subjects = append(subjects, conformance.ExecutorConfig{
		Name: executor.ProcessName + "-started",
		New: func() (sdk.Executor, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p, err := executor.NewPool(ctx, executor.PoolOptions{Workers: 2, Queue: 2, Grace: grace})
			if err != nil {
				return nil, err
			}
			return testkit.StartedCalls(p), nil
		},
		Caps: conformance.ExecutorCaps{Isolated: true, Workers: 2, Capacity: 4, Grace: grace, LargePayloads: true},
	})
	for _, s := range subjects {
		t.Run(s.Name, func(t *testing.T) {
			if testing.Short() && s.Name != sdk.DefaultExecutor {
				t.Skip("-short: no worker processes")
			}
			conformance.RunExecutor(t, s)
		})
	}
}
