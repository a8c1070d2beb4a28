package conformance_test

import (
	"testing"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/plugins/selector"
)

// TestBundledSelectors certifies every bundled selector in process.
func TestBundledSelectors(t *testing.T) {
	for _, b := range selector.Bundled {
		t.Run(b.Name, func(t *testing.T) {
			conformance.RunSelector(t, b.New)
		})
	}
}
