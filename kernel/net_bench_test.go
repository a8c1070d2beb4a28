package kernel_test

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
	_ "github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// Loopback echo round trips. The in-loop variant runs client and server on
// one loop, so a round trip is: client write, server read + write, client
// read, with two selector waits; it measures the transport paths alone.
// The goclient variant drives the loop's server from an ordinary Go
// goroutine with net.Conn, as a mixed program would.

// pinger sends msg, waits for it to come back whole, and repeats left
// times, then stops the loop.
type pinger struct {
	tr   kernel.Transport
	l    *kernel.Loop
	msg  []byte
	got  int
	left int
}

func (p *pinger) ConnectionMade(t kernel.BaseTransport) { p.tr = t.(kernel.Transport) }
func (p *pinger) ConnectionLost(error)                  {}
func (p *pinger) EOFReceived() bool                     { return false }
func (p *pinger) DataReceived(b []byte) {
	p.got += len(b)
	if p.got < len(p.msg) {
		return
	}
	p.got = 0
	p.left--
	if p.left <= 0 {
		p.l.Stop()
		return
	}
	p.tr.Write(p.msg)
}

// run makes n round trips.
func (p *pinger) run(n int) error {
	p.left = n
	if err := p.tr.Write(p.msg); err != nil {
		return err
	}
	return p.l.RunForever()
}

// newPingPair sets up an echo server and a pinger client on one loop.
func newPingPair(tb testing.TB, backend string, size int) (*pinger, func()) {
	sel, err := sdk.Selectors.New(backend)
	if err != nil {
		tb.Fatal(err)
	}
	l := kernel.New(sel)
	p := &pinger{l: l, msg: make([]byte, size)}
	var srv *kernel.Server
	task, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
		srv, err = kernel.CreateServer(co, testkit.NewEcho, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return struct{}{}, err
		}
		port := srv.Sockets()[0].LocalAddr().(*net.TCPAddr).Port
		_, _, err := kernel.CreateConnection(co, func() *pinger { return p }, "127.0.0.1", strconv.Itoa(port), nil)
		return struct{}{}, err
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := l.RunUntilComplete(task); err != nil {
		tb.Fatal(err)
	}
	return p, func() {
		p.tr.Close()
		srv.Close()
		l.Close()
	}
}

func BenchmarkEchoLoopback(b *testing.B) {
	for _, backend := range []string{"epoll", "poll"} {
		for _, size := range []int{64, 16 << 10} {
			b.Run(fmt.Sprintf("inloop/%s/%dB", backend, size), func(b *testing.B) {
				p, done := newPingPair(b, backend, size)
				defer done()
				if err := p.run(100); err != nil { // warm up
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.SetBytes(int64(2 * size))
				b.ResetTimer()
				if err := p.run(b.N); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/roundtrip")
			})
		}
	}
	b.Run("goclient/epoll/64B", func(b *testing.B) {
		sel, err := sdk.Selectors.New("epoll")
		if err != nil {
			b.Fatal(err)
		}
		l := kernel.New(sel)
		ready := make(chan string, 1)
		var srv *kernel.Server
		task, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
			srv, err = kernel.CreateServer(co, testkit.NewEcho, []string{"127.0.0.1"}, "0", nil)
			if err != nil {
				return struct{}{}, err
			}
			ready <- srv.Sockets()[0].LocalAddr().String()
			return struct{}{}, nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := l.RunUntilComplete(task); err != nil {
			b.Fatal(err)
		}
		loopDone := make(chan error, 1)
		go func() { loopDone <- l.RunForever() }()
		defer func() {
			l.CallSoonThreadsafe(func() { srv.Close(); l.Stop() })
			<-loopDone
			l.Close()
		}()
		c, err := net.Dial("tcp", <-ready)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		msg := make([]byte, 64)
		buf := make([]byte, 64)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/roundtrip")
	})
	// The same exchange between two goroutines over Go's net package, for
	// scale.
	b.Run("gonet/64B", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			s, err := ln.Accept()
			if err != nil {
				return
			}
			defer s.Close()
			io.Copy(s, s)
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		msg := make([]byte, 64)
		buf := make([]byte, 64)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/roundtrip")
	})
}

// TestEchoRoundTripAllocsNothing pins zero allocations per event on the
// stream transport paths (read into the loop buffer, DataReceived, Write
// straight to the socket, re-arm nothing): a run of 1000 round trips
// allocates exactly what a run of 10 does.
func TestEchoRoundTripAllocsNothing(t *testing.T) {
	for _, backend := range []string{"epoll", "poll"} {
		t.Run(backend, func(t *testing.T) {
			p, done := newPingPair(t, backend, 64)
			defer done()
			run := func(n int) func() {
				return func() {
					if err := p.run(n); err != nil {
						t.Fatal(err)
					}
				}
			}
			run(100)()
			many := testing.AllocsPerRun(5, run(1000))
			few := testing.AllocsPerRun(5, run(10))
			if many != few {
				t.Errorf("1000 round trips made %.1f allocations, 10 made %.1f: the transport allocates per event", many, few)
			}
		})
	}
}

// newDgPair sets up a UDP echo endpoint and an unconnected pinger (every
// SendTo names its destination) on one epoll loop.
func newDgPair(tb testing.TB) (*dgPinger, func()) {
	sel, err := sdk.Selectors.New("epoll")
	if err != nil {
		tb.Fatal(err)
	}
	l := kernel.New(sel)
	cli := &dgPinger{l: l, msg: make([]byte, 64)}
	task, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
		str, _, err := kernel.CreateDatagramEndpoint(co, func() *dgEcho { return &dgEcho{} }, &kernel.DatagramOptions{LocalAddr: "127.0.0.1:0"})
		if err != nil {
			return struct{}{}, err
		}
		sa, _ := str.GetExtraInfo("sockname")
		_, _, err = kernel.CreateDatagramEndpoint(co, func() *dgPinger { return cli }, &kernel.DatagramOptions{LocalAddr: "127.0.0.1:0"})
		cli.to = sa.(net.Addr)
		return struct{}{}, err
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := l.RunUntilComplete(task); err != nil {
		tb.Fatal(err)
	}
	return cli, func() { l.Close() }
}

func (p *dgPinger) run(n int) error {
	p.left = n
	if err := p.tr.SendTo(p.msg, p.to); err != nil {
		return err
	}
	return p.l.RunForever()
}

func BenchmarkDatagramLoopback(b *testing.B) {
	cli, done := newDgPair(b)
	defer done()
	if err := cli.run(100); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if err := cli.run(b.N); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/roundtrip")
}

// TestDatagramRoundTripAllocsNothing: the same for UDP with one peer: the
// source and destination addresses are converted once and reused.
func TestDatagramRoundTripAllocsNothing(t *testing.T) {
	cli, done := newDgPair(t)
	defer done()
	run := func(n int) func() {
		return func() {
			if err := cli.run(n); err != nil {
				t.Fatal(err)
			}
		}
	}
	run(100)()
	many := testing.AllocsPerRun(5, run(1000))
	few := testing.AllocsPerRun(5, run(10))
	if many != few {
		t.Errorf("1000 datagram round trips made %.1f allocations, 10 made %.1f", many, few)
	}
}

type dgEcho struct{ tr kernel.DatagramTransport }

func (p *dgEcho) ConnectionMade(t kernel.BaseTransport)    { p.tr = t.(kernel.DatagramTransport) }
func (p *dgEcho) ConnectionLost(error)                     {}
func (p *dgEcho) DatagramReceived(b []byte, addr net.Addr) { p.tr.SendTo(b, addr) }
func (p *dgEcho) ErrorReceived(error)                      {}

type dgPinger struct {
	tr   kernel.DatagramTransport
	l    *kernel.Loop
	to   net.Addr
	msg  []byte
	left int
}

func (p *dgPinger) ConnectionMade(t kernel.BaseTransport) { p.tr = t.(kernel.DatagramTransport) }
func (p *dgPinger) ConnectionLost(error)                  {}
func (p *dgPinger) ErrorReceived(error)                   {}
func (p *dgPinger) DatagramReceived(b []byte, _ net.Addr) {
	p.left--
	if p.left <= 0 {
		p.l.Stop()
		return
	}
	p.tr.SendTo(p.msg, p.to)
}
