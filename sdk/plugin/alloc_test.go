//go:build !race

package plugin

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// The supervision wrapped around the data plane (watchdog timer, wake flag,
// closed check) must not allocate per loop iteration.
func TestWaitDoesNotAllocate(t *testing.T) {
	sel := launch(t, Spec{Name: "testpoll"})
	r, w := pipe(t)
	_, err := unix.Write(w, []byte("x"))
	require.NoError(t, err)
	tok := sdk.MakeToken(1, 1)
	require.NoError(t, sel.Register(r, tok, sdk.Read))
	evs := make([]sdk.Event, 4)
	allocs := testing.AllocsPerRun(200, func() {
		if n, err := sel.Wait(evs, 0); err != nil || n != 1 {
			t.Fatalf("Wait = %d, %v", n, err)
		}
	})
	assert.Zero(t, allocs)
}

// BenchmarkWait is one loop iteration through the supervised plugin: a
// data-plane exchange reporting one ready descriptor. Besides wall time it
// reports the CPU both processes spend per Wait (this test process's
// getrusage, which includes the benchmark loop, and the plugin's from
// Stats): on a shared machine CPU per exchange is the steadier number, and
// the plugin's half of it is invisible to an ordinary Go benchmark.
func BenchmarkWait(b *testing.B) {
	sel := launch(b, Spec{Name: "testpoll"})
	r, w := pipe(b)
	if _, err := unix.Write(w, []byte("x")); err != nil {
		b.Fatal(err)
	}
	if err := sel.Register(r, sdk.MakeToken(1, 1), sdk.Read); err != nil {
		b.Fatal(err)
	}
	evs := make([]sdk.Event, 4)
	st0, host0 := pluginCPU(b, sel), hostCPU(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n, err := sel.Wait(evs, 0); err != nil || n != 1 {
			b.Fatalf("Wait = %d, %v", n, err)
		}
	}
	b.StopTimer()
	perWait := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(b.N) }
	b.ReportMetric(perWait(hostCPU(b)-host0), "host-cpu-µs/wait")
	b.ReportMetric(perWait(pluginCPU(b, sel)-st0), "plugin-cpu-µs/wait")
}

func pluginCPU(b *testing.B, sel *RemoteSelector) time.Duration {
	st, err := sel.Stats(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return st.CPUUser + st.CPUSys
}

func hostCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
