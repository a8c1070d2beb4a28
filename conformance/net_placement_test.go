package conformance_test

import (
	"testing"

	"github.com/loopkernel/loopkernel/conformance"
	_ "github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// TestNetPlacements certifies every bundled back-end in both placements
// against the networking contract, as TestPlacements does for the selector
// and kernel contracts. Debug mode is certified once, on the default
// back-end in process: what it adds (thread checks, scheduling sites, slow
// callback timing) is the kernel's and does not depend on the placement,
// which the kernel-debug suite already shows in every placement.
//
// -short keeps the in-process placement only.
func TestNetPlacements(t *testing.T) {
	eachPlacement(t, func(t *testing.T, f conformance.Factory) { conformance.RunNet(t, f) })
	t.Run(sdk.Selectors.All()[0].Name+"/net-debug", func(t *testing.T) {
		conformance.RunNet(t, conformance.Factory(sdk.Selectors.All()[0].New), conformance.NetConfig{Debug: true})
	})
}
