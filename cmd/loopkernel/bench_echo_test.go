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

// bench echo end to end on a small scale: both client engines measure
// loopkernel on epoll and the floor in the same run; the table has a row
// for each, with the ratio to the floor taken under the same client, and
// the JSON says which client and whether it was pinned.
func TestBenchEchoBothClients(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "echo.json")
	r := loopkernel(t, nil, "bench", "echo", "--client", "epoll,go", "--policies", "epoll", "--peers", "floor",
		"--sizes", "64", "--conns", "2", "--warmup", "50ms", "--duration", "200ms", "--json", out)
	require.Equal(t, 0, r.code, r.stderr)
	for _, client := range []string{"epoll", "go"} {
		assert.Regexp(t, `(?m)^\s*64 B\s+2\s+`+client+`\s+loopkernel/epoll\s+\d+\s+\d+\s+\d+\s+\d+\.\d\d\s+\d+\.\d\d\s`, r.stdout)
		assert.Regexp(t, `(?m)^\s*64 B\s+2\s+`+client+`\s+floor\s+\d+\s+\d+\s+\d+\s+\d+\.\d\d\s+1\.00\s`, r.stdout)
	}

	b, err := os.ReadFile(out)
	require.NoError(t, err)
	var rows []echobench.Row
	require.NoError(t, json.Unmarshal(b, &rows))
	require.Len(t, rows, 4)
	clients := map[echobench.Engine]int{}
	for _, row := range rows {
		assert.Empty(t, row.Error)
		assert.Positive(t, row.ReqPerSec)
		assert.Positive(t, row.CPUusReq)
		clients[row.Client]++
		if row.Client == echobench.EngineEpoll {
			assert.Positive(t, row.EventsWait, "the epoll client counts its events per wait")
		}
	}
	assert.Equal(t, map[echobench.Engine]int{echobench.EngineEpoll: 2, echobench.EngineGo: 2}, clients)
}

func TestBenchEchoUsage(t *testing.T) {
	t.Parallel()
	r := loopkernel(t, nil, "bench", "echo", "--client", "wrk")
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, `unknown client engine "wrk"`)
}
