package kernel_test

import (
	"testing"

	"github.com/loopkernel/loopkernel/conformance"
	_ "github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// TestContract runs the kernel contract (conformance.KernelSuite) on every
// bundled in-process selector, once as configured and once more with debug
// mode on, so the debug paths (goroutine checks, scheduling-site capture,
// callback timing) are held to the same behaviour.
func TestContract(t *testing.T) {
	for _, b := range sdk.Selectors.All() {
		t.Run(b.Name, func(t *testing.T) {
			conformance.RunKernel(t, b.New)
		})
		t.Run(b.Name+"/debug", func(t *testing.T) {
			conformance.RunKernel(t, b.New, conformance.KernelConfig{Debug: true})
		})
	}
}
