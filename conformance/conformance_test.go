package conformance_test

import (
	"testing"

	"github.com/loopkernel/loopkernel/conformance"
	_ "github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// TestBundledSelectors certifies every bundled selector in process.
func TestBundledSelectors(t *testing.T) {
	for _, b := range sdk.Selectors.All() {
		t.Run(b.Name, func(t *testing.T) {
			conformance.RunSelector(t, b.New)
		})
	}
}
