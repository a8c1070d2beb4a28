package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/internal/echobench"
)

// bench idle end to end on a small scale: loopkernel on epoll and the Go
// net peer each hold 200 connections that must all have echoed; the table
// and the JSON carry one row per server. No memory threshold here (that
// is what the benchmark reports, not what a test can pin across machines).
func TestBenchIdle(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "idle.json")
	r := loopkernel(t, nil, "bench", "idle", "--conns", "200", "--policies", "epoll", "--peers", "go-net",
		"--settle", "200ms", "--json", out)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `(?m)^\s*server\s+conns\s+echoed\s+RSS before MiB\s+RSS idle MiB\s+KiB/conn\s`, r.stdout)
	assert.Regexp(t, `(?m)^\s*loopkernel/epoll\s+200\s+200\s+\d+\.\d\s+\d+\.\d\s+-?\d+\.\d\d\s`, r.stdout)
	assert.Regexp(t, `(?m)^\s*go-net\s+200\s+200\s+\d+\.\d\s+\d+\.\d\s+-?\d+\.\d\d\s`, r.stdout)
	assert.NotContains(t, r.stdout, "issue 4 target", "the target line is for 10000 connections only")

	b, err := os.ReadFile(out)
	require.NoError(t, err)
	var rows []echobench.IdleRow
	require.NoError(t, json.Unmarshal(b, &rows))
	require.Len(t, rows, 2)
	for i, name := range []string{"loopkernel/epoll", "go-net"} {
		row := rows[i]
		assert.Equal(t, name, row.Server)
		assert.Empty(t, row.Error)
		assert.Equal(t, 200, row.Conns)
		assert.Equal(t, 200, row.Echoed, "%s: every connection must have echoed", name)
		assert.Positive(t, row.BeforeKiB)
		assert.Positive(t, row.IdleKiB)
		assert.InDelta(t, float64(row.IdleKiB-row.BeforeKiB)/200, row.PerConnKiB, 1e-9)
	}
}

func TestBenchIdleUsage(t *testing.T) {
	t.Parallel()
	r := loopkernel(t, nil, "bench", "idle", "--conns", "1,10")
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "one positive number")
}
