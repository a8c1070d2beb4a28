package serve

import (
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/stretchr/testify/require"
)

// keepAliveClient sends a request each time the previous response is in
// whole, until left reaches 0.
type keepAliveClient struct {
	t    kernel.Transport
	req  []byte
	got  int
	left int
	done *kernel.Future[struct{}]
}

func (c *keepAliveClient) ConnectionMade(t kernel.BaseTransport) { c.t = t.(kernel.Transport) }
func (c *keepAliveClient) ConnectionLost(error) {
	if !c.done.Done() {
		c.done.SetResult(struct{}{})
	}
}
func (c *keepAliveClient) EOFReceived() bool { return false }
func (c *keepAliveClient) DataReceived(b []byte) {
	c.got += len(b)
	for c.got >= len(helloKeepAlive) {
		c.got -= len(helloKeepAlive)
		if c.left--; c.left <= 0 {
			c.done.SetResult(struct{}{})
			return
		}
		c.t.Write(c.req)
	}
}

// runKeepAlive serves n keep-alive requests on one connection to an HTTP
// server with the default limits, so each request settles its deadline.
func runKeepAlive(tb testing.TB, l *kernel.Loop, n int, measure func(func())) {
	lim := DefaultLimits("http")
	sw := newSweep(l, lim)
	defer sw.stop()
	s := &httpServer{loop: l, lim: &lim, sw: sw, head: headLimits{maxBytes: lim.MaxHeaderBytes, maxFields: lim.MaxHeaders}}
	_, err := testkit.Run(tb, l, func(co *kernel.Co) (struct{}, error) {
		cli := &keepAliveClient{req: []byte("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")}
		srv, tr, err := testkit.Connect(co, func() *httpConn { return &httpConn{s: s} }, cli)
		if err != nil {
			return struct{}{}, err
		}
		defer srv.Close()
		defer tr.Close()
		var werr error
		measure(func() {
			cli.left, cli.done = n, kernel.CreateFuture[struct{}](l)
			tr.Write(cli.req)
			_, werr = cli.done.Await(co)
		})
		return struct{}{}, werr
	})
	require.NoError(tb, err)
	require.Len(tb, sw.conns, 1, "the server connection is still registered")
}

// BenchmarkHTTPKeepAlive is a keep-alive request and its response on one
// loop, client and server both: with the deadlines in place the server side
// allocates nothing per request.
func BenchmarkHTTPKeepAlive(b *testing.B) {
	l := testkit.NewLoop(b, "", kernel.WithLogger(hclog.NewNullLogger()))
	runKeepAlive(b, l, b.N, func(run func()) {
		b.ReportAllocs()
		b.ResetTimer()
		run()
	})
}

func TestHTTPKeepAliveAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations")
	}
	l := testkit.NewLoop(t, "", kernel.WithLogger(hclog.NewNullLogger()))
	runKeepAlive(t, l, 1000, func(run func()) {
		run() // warm up buffers
	})
	const n = 2000
	var allocs float64
	runKeepAlive(t, l, n, func(run func()) {
		allocs = testing.AllocsPerRun(1, run) / n
	})
	// Each run also makes a future (and the await's bookkeeping), spread
	// over n requests; a per-request allocation would show as >= 1.
	require.Less(t, allocs, 0.05, "allocations per keep-alive request")
}
