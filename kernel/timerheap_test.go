package kernel_test

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/kernel"
	_ "github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// TestCancelledTimersDoNotGrowHeap schedules and cancels 100k timers from
// inside a running loop, in batches, behind one live timer that is due
// first, so that popping cancelled timers off the head cannot be what keeps
// the heap small: only the sweep can. Without it the heap would end with
// 100k entries.
func TestCancelledTimersDoNotGrowHeap(t *testing.T) {
	for _, b := range sdk.Selectors.All() {
		t.Run(b.Name, func(t *testing.T) {
			sel, err := b.New()
			require.NoError(t, err)
			l := kernel.New(sel, kernel.WithLogger(hclog.NewNullLogger()))
			defer l.Close()

			_, err = l.CallLater(time.Hour, func() {})
			require.NoError(t, err)
			const total, batch = 100_000, 1000
			scheduled, maxLen := 0, 0
			var step func()
			step = func() {
				maxLen = max(maxLen, kernel.TimerHeapLen(l))
				for range batch {
					th, err := l.CallLater(2*time.Hour, func() {})
					if err != nil {
						t.Errorf("CallLater: %v", err)
						l.Stop()
						return
					}
					th.Cancel()
				}
				scheduled += batch
				if scheduled >= total {
					l.Stop()
					return
				}
				if _, err := l.CallSoon(step); err != nil {
					t.Errorf("CallSoon: %v", err)
					l.Stop()
				}
			}
			_, err = l.CallSoon(step)
			require.NoError(t, err)
			require.NoError(t, l.RunForever())
			require.Equal(t, total, scheduled)
			// Each iteration starts with at most the live timer plus one
			// batch of cancelled ones not yet swept.
			require.LessOrEqual(t, maxLen, batch+1, "cancelled timers must be swept out of the heap")
			l.Stop()
			require.NoError(t, l.RunForever())
			require.LessOrEqual(t, kernel.TimerHeapLen(l), 1, "after an iteration only the live timer remains")
		})
	}
}
