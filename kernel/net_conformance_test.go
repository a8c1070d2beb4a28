package kernel_test

import (
	"testing"

	"github.com/loopkernel/loopkernel/conformance"
	_ "github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// TestNetConformance runs the networking contract (transports, servers,
// datagram endpoints, sock_* operations, sendfile) on the bundled selectors
// in process, so that the kernel's own tests drive every transport. The
// case bodies live in the conformance package, which also binds them to
// the out-of-process placement and to debug mode.
func TestNetConformance(t *testing.T) {
	for _, b := range sdk.Selectors.All() {
		t.Run(b.Name, func(t *testing.T) {
			conformance.RunNet(t, conformance.Factory(b.New))
		})
	}
}
