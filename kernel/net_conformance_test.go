package kernel_test

import (
	"testing"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/kernel"
	_ "github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// TestNetConformance runs the networking contract (transports, servers,
// datagram endpoints, sock_* operations, sendfile) on the bundled selectors
// in process. The case bodies live in the conformance package, which also
// binds them to the out-of-process placement; here they get the one thing
// only the kernel's own tests have, the switch that turns zero-copy
// sendfile off, so the read-and-send fallback is also driven with regular
// files, offsets and counts.
func TestNetConformance(t *testing.T) {
	for _, b := range sdk.Selectors.All() {
		t.Run(b.Name, func(t *testing.T) {
			conformance.RunNet(t, conformance.Factory(b.New), conformance.NetConfig{
				SetSendfileZeroCopy: kernel.SetSendfileZeroCopy,
			})
		})
	}
}
