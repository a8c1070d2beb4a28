package echobench

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func serveInBackground(t *testing.T, serve func(string, func(net.Addr)) error) string {
	t.Helper()
	addrs := make(chan net.Addr, 1)
	go serve("127.0.0.1:0", func(a net.Addr) { addrs <- a })
	select {
	case a := <-addrs:
		return a.String()
	case <-time.After(5 * time.Second):
		t.Fatal("server did not start")
		return ""
	}
}

var engines = []Engine{EngineEpoll, EngineGo}

func TestLoadAgainstReferenceServers(t *testing.T) {
	for name, serve := range map[string]func(string, func(net.Addr)) error{"floor": ServeFloor, "go-net": ServeGoNet} {
		addr := serveInBackground(t, serve)
		for _, engine := range engines {
			t.Run(name+"/"+string(engine), func(t *testing.T) {
				for _, size := range []int{1, 64, 100 * 1024} {
					var opened, closed bool
					res, err := Load(context.Background(), LoadConfig{
						Addr: addr, Engine: engine, Conns: 4, Size: size, Pipeline: 2,
						Warmup: 20 * time.Millisecond, Duration: 100 * time.Millisecond,
					}, func(open bool) {
						if open {
							opened = true
						} else {
							closed = true
						}
					})
					require.NoError(t, err, "size %d", size)
					require.True(t, opened && closed, "the measured window must open and close")
					require.Positive(t, res.Requests, "size %d", size)
					require.Equal(t, int64(0), res.Requests%2, "pipelined requests are counted by batch")
					require.LessOrEqual(t, res.P50, res.P99)
					if engine == EngineEpoll {
						require.Positive(t, res.Client.Waits)
						require.GreaterOrEqual(t, res.Client.Reads, res.Requests/2, "at least one read per batch")
					}
				}
			})
		}
	}
}

// Every way of echoing wrongly — one byte flipped, the stream shifted by
// a byte dropped or one inserted, a byte that was never sent — must fail
// the load with ErrMismatch, under either engine.
func TestLoadDetectsWrongEchoes(t *testing.T) {
	cases := map[string]func(total int, b []byte) []byte{
		"one byte in a thousand flipped": func(total int, b []byte) []byte {
			for i := range b {
				if (total+i)%1000 == 999 {
					b[i] ^= 0xff
				}
			}
			return b
		},
		"one byte dropped": func(total int, b []byte) []byte {
			if total <= 500 && total+len(b) > 500 {
				return append(b[:500-total:500-total], b[500-total+1:]...)
			}
			return b
		},
		"one byte inserted": func(total int, b []byte) []byte {
			if total <= 500 && total+len(b) > 500 {
				return append(append(b[:500-total:500-total], 0x5a), b[500-total:]...)
			}
			return b
		},
	}
	for name, transform := range cases {
		addr := startEchoServer(t, transform)
		for _, engine := range engines {
			t.Run(name+"/"+string(engine), func(t *testing.T) {
				start := time.Now()
				_, err := Load(context.Background(), LoadConfig{
					Addr: addr, Engine: engine, Conns: 1, Size: 64, Pipeline: 1,
					Warmup: 10 * time.Millisecond, Duration: 2 * time.Second,
				}, nil)
				// The epoll engine checks bytes as they arrive and fails at
				// the first wrong one. The Go engine checks a batch once it
				// has all of it, so a dropped byte is a batch that never
				// completes: it fails when the window has closed and the
				// grace period has passed.
				if engine == EngineGo && name == "one byte dropped" {
					require.ErrorIs(t, err, ErrIncomplete)
					require.Less(t, time.Since(start), 2*time.Second+drainGrace+time.Second)
					return
				}
				require.ErrorIs(t, err, ErrMismatch)
				require.Less(t, time.Since(start), 1500*time.Millisecond, "a wrong echo ends the load before its 2 s window")
			})
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h hist
	for i := 1; i <= 100; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	h.record(50 * time.Millisecond)
	require.InDelta(t, 51, h.quantile(0.5).Microseconds(), 1)
	require.InDelta(t, 100, h.quantile(0.99).Microseconds(), 1)
	require.Equal(t, 50*time.Millisecond, h.quantile(0.999))
}

func TestProcessCPUReadsSelf(t *testing.T) {
	c, err := processTreeCPU(osGetpid())
	require.NoError(t, err)
	// Burn a little CPU and see the counter move forward, never back.
	deadline := time.Now().Add(50 * time.Millisecond)
	var b bytes.Buffer
	for time.Now().Before(deadline) {
		b.WriteString("x")
		b.Reset()
	}
	c2, err := processTreeCPU(osGetpid())
	require.NoError(t, err)
	require.GreaterOrEqual(t, c2, c)
}

func TestTableHasRatios(t *testing.T) {
	rows := []Row{
		{Server: "floor", Size: 64, Conns: 10, ReqPerSec: 1000, CPUusReq: 8, Rounds: 1},
		{Server: "uvloop", Size: 64, Conns: 10, ReqPerSec: 900, CPUusReq: 10, Rounds: 1},
		{Server: "loopkernel/epoll", Size: 64, Conns: 10, ReqPerSec: 1100, CPUusReq: 8.8, Rounds: 1},
	}
	var b bytes.Buffer
	WriteTable(&b, rows)
	require.Contains(t, b.String(), "1.10") // 8.8 / 8 against the floor
	require.Contains(t, b.String(), "0.88") // 8.8 / 10 against uvloop
}

// A ratio compares servers measured by the same client: with two clients
// in the table, each server's ratio is to the floor under its own client.
func TestTableRatiosStayWithinAClient(t *testing.T) {
	rows := []Row{
		{Server: "loopkernel/epoll", Client: EngineEpoll, Size: 64, Conns: 10, ReqPerSec: 1, CPUusReq: 13, Rounds: 1},
		{Server: "floor", Client: EngineEpoll, Size: 64, Conns: 10, ReqPerSec: 1, CPUusReq: 10, Rounds: 1},
		{Server: "loopkernel/epoll", Client: EngineGo, Size: 64, Conns: 10, ReqPerSec: 1, CPUusReq: 13, Rounds: 1},
		{Server: "floor", Client: EngineGo, Size: 64, Conns: 10, ReqPerSec: 1, CPUusReq: 20, Rounds: 1},
	}
	var b bytes.Buffer
	WriteTable(&b, rows)
	require.Regexp(t, `(?m)^\s*64 B\s+10\s+epoll\s+loopkernel/epoll\s+1\s+0\s+0\s+13\.00\s+1\.30\s`, b.String())
	require.Regexp(t, `(?m)^\s*64 B\s+10\s+go\s+loopkernel/epoll\s+1\s+0\s+0\s+13\.00\s+0\.65\s`, b.String())
}

// Run end to end with a Python asyncio server: both clients measure it,
// the probe runs once per window with its placeholders filled, and --wrap
// style argv prefixes start the server.
func TestRunWithProbeAndWrap(t *testing.T) {
	specs, _, err := PythonPeers("/usr/bin/python3")
	require.NoError(t, err)
	if len(specs) == 0 {
		t.Skip("python3 is not installed")
	}
	spec := specs[0] // asyncio
	spec.Argv = append([]string{"/usr/bin/env", "LOOPKERNEL_WRAPPED=1"}, spec.Argv...)
	log := filepath.Join(t.TempDir(), "probe.log")
	rows, err := Run(context.Background(), Config{
		Servers: []ServerSpec{spec}, Sizes: []int{64}, Conns: []int{2},
		Warmup: 20 * time.Millisecond, Duration: 150 * time.Millisecond, Rounds: 1,
		Engines: []Engine{EngineEpoll, EngineGo}, Pin: true,
		Probe: `echo "{name} {client} {size} {conns} $(tr '\0' ' ' < /proc/{pid}/environ | grep -o LOOPKERNEL_WRAPPED=1)" >> ` + log,
	})
	require.NoError(t, err)
	require.Len(t, rows, 2)
	for i, engine := range []Engine{EngineEpoll, EngineGo} {
		require.Empty(t, rows[i].Error)
		require.Equal(t, engine, rows[i].Client)
		require.Positive(t, rows[i].CPUusReq)
		require.Positive(t, rows[i].ClientCPUusReq)
	}
	b, err := os.ReadFile(log)
	require.NoError(t, err)
	require.Equal(t, "asyncio epoll 64 2 LOOPKERNEL_WRAPPED=1\nasyncio go 64 2 LOOPKERNEL_WRAPPED=1\n", string(b))
}
