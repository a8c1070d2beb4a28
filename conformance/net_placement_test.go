package conformance_test

import (
	"testing"

	"github.com/loopkernel/loopkernel/conformance"
	_ "github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
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
	for _, b := range sdk.Selectors.All() {
		for _, spec := range []string{b.Name, "plugin:" + b.Name} {
			t.Run(spec, func(t *testing.T) {
				if testing.Short() && spec != b.Name {
					t.Skip("-short: no plugin processes")
				}
				f, err := plugin.Resolve(spec, plugin.Options{})
				if err != nil {
					t.Fatal(err)
				}
				conformance.RunNet(t, conformance.Factory(f))
			})
		}
	}
	t.Run(sdk.Selectors.All()[0].Name+"/net-debug", func(t *testing.T) {
		conformance.RunNet(t, conformance.Factory(sdk.Selectors.All()[0].New), conformance.NetConfig{Debug: true})
	})
}
