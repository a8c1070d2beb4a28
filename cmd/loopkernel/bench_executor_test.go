package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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

func TestCalibrateSpin(t *testing.T) {
	n := calibrateSpin(time.Millisecond)
	assert.Positive(t, n)
	t0 := time.Now()
	spin(n * 20)
	assert.Less(t, time.Since(t0), 10*time.Second, "the calibration is in the right order of magnitude")
}
