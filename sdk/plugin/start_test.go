package plugin

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A start whose context ends is abandoned at once, whatever StartTimeout
// says, and leaves nothing behind.
func TestStartAbandonedWithItsContext(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	fds := openFDs(t)
	for _, after := range []time.Duration{0, 2 * time.Millisecond, 10 * time.Millisecond} {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(after, cancel)
		t0 := time.Now()
		sel, err := launchSelector(ctx, Spec{Name: "testpoll", StartTimeout: time.Minute, Logger: hclog.NewNullLogger()})
		took := time.Since(t0)
		if err == nil {
			// The start beat the cancel: fine, as long as it works.
			require.NoError(t, sel.Close())
			continue
		}
		assert.ErrorIs(t, err, context.Canceled, "after %v", after)
		assert.Less(t, took, 5*time.Second, "after %v", after)
		cancel()
	}
	left, _ := os.ReadDir(tmp)
	assert.Empty(t, left, "socket directories left behind")
	assert.LessOrEqual(t, openFDs(t), fds, "descriptors leaked")
}

func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(entries)
}

// Every stage of a start is stamped, in order: BenchmarkStart and the debug
// log read them.
func TestStartTraceStages(t *testing.T) {
	sel := launch(t, Spec{Name: "testpoll", Config: map[string]string{"name": "traced"}, Logger: hclog.NewNullLogger()})
	tr := sel.proc.trace
	stamps := []time.Time{tr.begin, tr.spawned, tr.line, tr.dialed, tr.handshook, tr.ready}
	for i, ts := range stamps {
		require.False(t, ts.IsZero(), "stage %d not stamped", i)
		if i > 0 {
			assert.False(t, ts.Before(stamps[i-1]), "stage %d before stage %d", i, i-1)
		}
	}
}
