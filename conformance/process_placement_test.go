package conformance_test

import (
	"testing"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/sdk"
)

// TestProcessPlacements certifies every bundled back-end in both
// placements against the process contract (pipes, subprocesses, the
// streams layer), as TestNetPlacements does for the networking one; debug
// mode once, on the default back-end in process. -short keeps the
// in-process placement only.
func TestProcessPlacements(t *testing.T) {
	eachPlacement(t, func(t *testing.T, f conformance.Factory) { conformance.RunProcess(t, f) })
	t.Run(sdk.Selectors.All()[0].Name+"/process-debug", func(t *testing.T) {
		conformance.RunProcess(t, conformance.Factory(sdk.Selectors.All()[0].New), conformance.NetConfig{Debug: true})
	})
}
