package conformance_test

import (
	"fmt"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/plugins/executor"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
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

// An executor spec binds the executor suite with the capabilities its
// placement gives: the process pool is bound with a bounded queue, so its
// queue and back-pressure cases run; nothing starts until a case runs.
func ExampleExecutorBinding() {
	for _, spec := range []string{"goroutine", "process"} {
		cfg, err := conformance.ExecutorBinding(spec, plugin.Options{})
		if err != nil {
			panic(err)
		}
		fmt.Println(cfg.Name, cfg.Caps.Isolated, cfg.Caps.Workers, cfg.Caps.Capacity, cfg.Caps.LargePayloads)
	}
	// Output:
	// goroutine false 0 0 true
	// process true 2 4 true
}
