package conformance_test

import (
	"testing"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// TestResolverPlacements certifies every registered resolver back-end (go,
// dns) in both placements against the resolver contract. The test binary
// is its own plugin (TestMain calls plugin.ServeBundled). -short keeps the
// in-process placement only.
func TestResolverPlacements(t *testing.T) {
	for _, b := range sdk.Resolvers.All() {
		for _, spec := range []string{b.Name, "plugin:" + b.Name} {
			t.Run(spec, func(t *testing.T) {
				if testing.Short() && spec != b.Name {
					t.Skip("-short: no plugin processes")
				}
				cfg, err := conformance.ResolverBinding(spec, plugin.Options{})
				if err != nil {
					t.Fatal(err)
				}
				conformance.RunResolver(t, cfg)
			})
		}
	}
}
