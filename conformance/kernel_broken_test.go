package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/conformance/internal/brokensel"
)

// TestKernelSuiteCatchesBrokenSelector is the kernel suite's certificate:
// on a selector whose Wake does nothing, a loop blocked in its selector can
// never be woken by CallSoonThreadsafe, and the case that checks it must not
// pass; cases the breakage does not touch must still pass. (The woken case
// cannot end at all: even its watchdog's wake goes nowhere. The runner cuts
// it off as a hang and abandons its goroutine, which stays blocked until the
// test binary exits.)
func TestKernelSuiteCatchesBrokenSelector(t *testing.T) {
	want := map[string]Status{
		"kernel/threadsafe/wakes-blocked-loop": Hang,
		"kernel/call-soon/fifo-exactly-once":   Pass,
		"kernel/future/result":                 Pass,
		"kernel/task/await-task":               Pass,
	}
	// KeepGoing: after the hang the other cases would be blocked.
	rs, err := Run(context.Background(), KernelSuite(KernelConfig{}), brokensel.New, Options{
		Timeout:   2 * time.Second,
		KeepGoing: true,
		Match:     func(name string) bool { _, ok := want[name]; return ok },
	})
	require.NoError(t, err)
	require.Len(t, rs, len(want))
	for _, r := range rs {
		assert.Equal(t, "kernel", r.Suite)
		assert.Equal(t, want[r.Case], r.Status, "%s: %s", r.Case, r.Message)
	}
}
