package conformance_test

import (
	"fmt"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/plugins/executor"
	"github.com/loopkernel/loopkernel/sdk"
)

// The executor suite binds to any sdk.Executor by a factory and the
// capabilities it claims; in a test, conformance.RunExecutor(t, cfg) runs
// every case as a subtest, skipping the ones whose capability the executor
// lacks, with that capability named.
func ExampleExecutorSuite() {
	cfg := conformance.ExecutorConfig{
		Name: "goroutine",
		New:  func() (sdk.Executor, error) { return executor.NewGoroutine(), nil },
		Caps: conformance.ExecutorCaps{LargePayloads: true},
	}
	s := conformance.ExecutorSuite(cfg)
	fmt.Println(s.Name, len(s.Cases) > 10, s.Cases[0].Name)
	// Output: executor true executor/results-and-errors
}
