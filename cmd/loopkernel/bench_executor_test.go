package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"golang.org/x/sys/unix"
)

// The table puts each measure beside its Python twin with the advantage the
// right way round: a smaller time, a larger rate.
func TestExecutorTable(t *testing.T) {
	side := func(rt, cps float64) execSide {
		return execSide{RoundTripNs: rt, Throughput: map[string]float64{"1": cps, "2": 2 * cps},
			ThroughputCPU: map[string]float64{}, CPUBound: map[string]float64{"1": 100, "2": 190}}
	}
	var out bytes.Buffer
	writeExecutorTable(&out, []execSide{side(20e3, 10000)}, []execSide{side(200e3, 2000)})
	text := out.String()
	rows := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows[strings.Join(f[:len(f)-1], " ")] = f[len(f)-1]
		}
	}
	assert.Contains(t, text, "round trip, 1 worker, wall µs")
	assert.Contains(t, rows, "round trip, 1 worker, wall µs 20.0 200.0", text)
	assert.Equal(t, "10.0×", rows["round trip, 1 worker, wall µs 20.0 200.0"], "a time ten times smaller is a 10× advantage")
	assert.Equal(t, "5.0×", rows["calls/s, 64 in flight, 1 worker(s) 10000 2000"], "a rate five times larger is a 5× advantage")
	assert.Equal(t, "1.9×", rows["scaling 1 → 2 workers, CPU-bound 1.9×"], text)
}

// The calibrated count takes about the time asked for when the result is
// used, as the function the bench calls uses it (measured on the thread's
// CPU clock, so load does not matter): a calibration whose spin the
// compiler dropped came out eight times too long.
func TestCalibrateSpin(t *testing.T) {
	n := calibrateSpin(time.Millisecond)
	assert.Positive(t, n)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := func() time.Duration {
		var ts unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
		return time.Duration(ts.Nano())
	}
	t0 := cpu()
	spinSink = spin(n * 20)
	el := cpu() - t0
	assert.Greater(t, el, 10*time.Millisecond, "20 calibrated milliseconds")
	assert.Less(t, el, 60*time.Millisecond, "20 calibrated milliseconds")
}
