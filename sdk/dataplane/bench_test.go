package dataplane

import (
	"github.com/stretchr/testify/require"
	"net"
	"os"
	"testing"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// perRoundTrip reports the mean time of one iteration in microseconds, so
// the placements read side by side in one run.
func perRoundTrip(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "µs/roundtrip")
}

func benchClient(b *testing.B, placement string) *Client {
	var host *os.File
	switch placement {
	case "goroutine":
		h, pconn, err := Socketpair()
		require.NoError(b, err)
		host = h
		sel, err := newTestEpoll()
		require.NoError(b, err)
		done := make(chan error, 1)
		go func() { done <- Serve(b.Context(), pconn, sel, hclog.NewNullLogger()) }()
		b.Cleanup(func() { <-done; pconn.Close(); sel.Close() })
	case "process":
		host, _ = startChild(b, "serve")
	}
	c, err := NewClient(host, hclog.NewNullLogger())
	require.NoError(b, err)
	b.Cleanup(func() { c.Close() })
	return c
}

// netClient is the same request/reply exchange over net.UnixConn on both
// ends (the peer also runs a real Wait(0)).
func netClient(b *testing.B, placement string) *net.UnixConn {
	var host *os.File
	switch placement {
	case "goroutine":
		h, pconn, err := Socketpair()
		require.NoError(b, err)
		host = h
		pc, err := net.FileConn(pconn)
		require.NoError(b, err)
		pconn.Close()
		sel, err := newTestEpoll()
		require.NoError(b, err)
		done := make(chan struct{})
		go func() { netEcho(pc.(*net.UnixConn), sel); close(done) }()
		b.Cleanup(func() { pc.Close(); <-done; sel.Close() })
	case "process":
		host, _ = startChild(b, "netecho")
	}
	c, err := net.FileConn(host)
	require.NoError(b, err)
	host.Close()
	b.Cleanup(func() { c.Close() })
	return c.(*net.UnixConn)
}

// BenchmarkRoundTrip measures one loop iteration's exchange with nothing
// ready: Client.Wait(0) over the data plane, the same frames over
// net.UnixConn, and an in-process epoll Wait(0) for the floor.
func BenchmarkRoundTrip(b *testing.B) {
	for _, placement := range []string{"goroutine", "process"} {
		b.Run("dataplane-"+placement, func(b *testing.B) {
			c := benchClient(b, placement)
			evs := make([]sdk.Event, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Wait(evs, 0); err != nil {
					b.Fatal(err)
				}
			}
			perRoundTrip(b)
		})
		b.Run("netUnixConn-"+placement, func(b *testing.B) {
			c := netClient(b, placement)
			req := make([]byte, headerLen+reqBodyLen)
			putHeader(req, header{typ: tRequest})
			reply := make([]byte, maxFrame)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Read(reply); err != nil {
					b.Fatal(err)
				}
			}
			perRoundTrip(b)
		})
	}
	b.Run("inprocess-epoll", func(b *testing.B) {
		sel, err := newTestEpoll()
		require.NoError(b, err)
		defer sel.Close()
		evs := make([]sdk.Event, 64)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := sel.Wait(evs, 0); err != nil {
				b.Fatal(err)
			}
		}
		perRoundTrip(b)
	})
}

// BenchmarkReadiness is one full readiness trip: write a byte to a
// registered socket, Wait reports it, read it back.
func BenchmarkReadiness(b *testing.B) {
	run := func(b *testing.B, sel sdk.Selector) {
		a, peer := pair(b)
		tok := sdk.MakeToken(1, 1)
		require.NoError(b, sel.Register(a, tok, sdk.Read))
		evs := make([]sdk.Event, 8)
		one, buf := []byte("x"), make([]byte, 1)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			unix.Write(peer, one)
			n, err := sel.Wait(evs, -1)
			if err != nil || n != 1 || evs[0].Token != tok {
				b.Fatalf("Wait = %d %v %v", n, evs[:n], err)
			}
			unix.Read(a, buf)
		}
		perRoundTrip(b)
		require.NoError(b, sel.Unregister(tok))
	}
	for _, placement := range []string{"goroutine", "process"} {
		b.Run("dataplane-"+placement, func(b *testing.B) { run(b, benchClient(b, placement)) })
	}
	b.Run("inprocess-epoll", func(b *testing.B) {
		sel, err := newTestEpoll()
		require.NoError(b, err)
		defer sel.Close()
		run(b, sel)
	})
}
