package echobench

import (
	"bytes"
	"context"
	"net"
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

func TestLoadAgainstReferenceServers(t *testing.T) {
	for name, serve := range map[string]func(string, func(net.Addr)) error{"floor": ServeFloor, "go-net": ServeGoNet} {
		t.Run(name, func(t *testing.T) {
			addr := serveInBackground(t, serve)
			for _, size := range []int{1, 64, 100 * 1024} {
				var opened, closed bool
				res, err := Load(context.Background(), LoadConfig{
					Addr: addr, Conns: 4, Size: size, Pipeline: 2,
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
			}
		})
	}
}

// A server that corrupts one byte in a thousand must be caught.
func TestLoadDetectsCorruption(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 4096)
				total := 0
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					for i := 0; i < n; i++ {
						if (total+i)%1000 == 999 {
							buf[i] ^= 0xff
						}
					}
					total += n
					c.Write(buf[:n])
				}
			}()
		}
	}()
	_, err = Load(context.Background(), LoadConfig{
		Addr: ln.Addr().String(), Conns: 1, Size: 64, Pipeline: 1,
		Warmup: 10 * time.Millisecond, Duration: 200 * time.Millisecond,
	}, nil)
	require.ErrorIs(t, err, ErrMismatch)
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
