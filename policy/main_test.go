package policy

import (
	"os"
	"testing"

	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// TestMain lets this test binary serve as the bundled plugin that the
// epoll-plugin and poll-plugin policies re-execute.
func TestMain(m *testing.M) {
	plugin.ServeBundled()
	os.Exit(m.Run())
}
