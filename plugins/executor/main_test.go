package executor_test

import (
	"os"
	"testing"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// The test binary is its own worker: a pool re-executes it with the bundled
// executor named in the environment, and ServeBundled, first thing in
// TestMain, serves it instead of running tests.
func TestMain(m *testing.M) {
	if os.Getenv(floorPeerEnv) != "" {
		floorPeer() // BenchmarkSeqpacketFloor's other process
	}
	plugin.ServeBundled()
	testkit.QuickRaceExit()
	os.Exit(m.Run())
}
