package completion_test

import (
	"testing"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/plugins/selector"
)

// TestProcessConformance runs the process contract (pipe transports,
// subprocesses, streams.Process) on the io_uring completion driver, as
// TestNetConformance runs the networking one.
func TestProcessConformance(t *testing.T) {
	conformance.RunProcess(t, conformance.Factory(selector.NewEpoll), conformance.NetConfig{Driver: newUring(t)})
}
