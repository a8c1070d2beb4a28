package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/bench"
)

// bench spawn end to end on a small scale: every side starts and reaps its
// children and moves its bytes through cat; the table and the JSON carry
// one row per side. No ratio is asserted (that is what the benchmark
// reports, not what a test can pin on a shared machine).
func TestBenchSpawn(t *testing.T) {
	if err := exec.Command(bench.DefaultPython, "-c", "import uvloop").Run(); err != nil {
		t.Skipf("needs %s with uvloop (python3-uvloop): %v", bench.DefaultPython, err)
	}
	out := filepath.Join(t.TempDir(), "spawn.json")
	r := loopkernel(t, nil, "bench", "spawn", "--children", "20", "--bytes", "4194304", "--rounds", "1", "--json", out)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `(?m)^\s*side\s+children/s\s+×\s+CPU-µs/child`, r.stdout)
	for _, side := range []string{`loopkernel\S*`, "asyncio", "uvloop"} {
		assert.Regexp(t, `(?m)^\s*`+side+`\s+\d+\s+\d+\.\d\d\s+\d+`, r.stdout)
	}
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	var rows []struct {
		Side         string  `json:"side"`
		ChildrenPerS float64 `json:"children_per_s"`
		PipeMBPerS   float64 `json:"pipe_mb_per_s"`
	}
	require.NoError(t, json.Unmarshal(b, &rows))
	require.Len(t, rows, 3)
	for _, row := range rows {
		assert.Positive(t, row.ChildrenPerS, row.Side)
		assert.Positive(t, row.PipeMBPerS, row.Side)
	}
}
