package kernel_test

import (
	"testing"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/sdk"
)

// TestProcessConformance runs the process contract (pipe transports,
// subprocesses, streams.Process) on the bundled selectors in process; the
// conformance package binds it to the plugin placement and debug mode too.
func TestProcessConformance(t *testing.T) {
	for _, b := range sdk.Selectors.All() {
		t.Run(b.Name, func(t *testing.T) {
			conformance.RunProcess(t, conformance.Factory(b.New))
		})
	}
}
