package kernel_test

import (
	"os"
	"testing"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/sdk"
)

// pipeRelay reads one pipe and writes what arrives to another.
type pipeRelay struct{ out kernel.WriteTransport }

func (p *pipeRelay) ConnectionMade(kernel.BaseTransport) {}
func (p *pipeRelay) ConnectionLost(error)                {}
func (p *pipeRelay) EOFReceived() bool                   { return false }
func (p *pipeRelay) DataReceived(b []byte)               { p.out.Write(b) }

// pipePinger writes msg into the first pipe and waits for it on the last.
type pipePinger struct {
	l    *kernel.Loop
	out  kernel.WriteTransport
	msg  []byte
	got  int
	left int
}

func (p *pipePinger) ConnectionMade(kernel.BaseTransport) {}
func (p *pipePinger) ConnectionLost(error)                {}
func (p *pipePinger) EOFReceived() bool                   { return false }
func (p *pipePinger) DataReceived(b []byte) {
	if p.got += len(b); p.got < len(p.msg) {
		return
	}
	p.got = 0
	if p.left--; p.left <= 0 {
		p.l.Stop()
		return
	}
	p.out.Write(p.msg)
}

type nopWriteProto struct{}

func (nopWriteProto) ConnectionMade(kernel.BaseTransport) {}
func (nopWriteProto) ConnectionLost(error)                {}

// BenchmarkPipeRoundTrip: 64 bytes through two pipes and back on one loop
// (write pipe, read pipe, relay, write pipe, read pipe): the pipe
// transports' paths, which must allocate nothing per round trip.
func BenchmarkPipeRoundTrip(b *testing.B) {
	sel, err := sdk.Selectors.New("epoll")
	if err != nil {
		b.Fatal(err)
	}
	l := kernel.New(sel)
	defer l.Close()
	r1, w1, _ := os.Pipe()
	r2, w2, _ := os.Pipe()
	p := &pipePinger{l: l, msg: make([]byte, 64)}
	task, _ := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
		out2, _, err := kernel.ConnectWritePipe(co, func() nopWriteProto { return nopWriteProto{} }, w2)
		if err != nil {
			return struct{}{}, err
		}
		if _, _, err := kernel.ConnectReadPipe(co, func() *pipeRelay { return &pipeRelay{out: out2} }, r1); err != nil {
			return struct{}{}, err
		}
		if p.out, _, err = kernel.ConnectWritePipe(co, func() nopWriteProto { return nopWriteProto{} }, w1); err != nil {
			return struct{}{}, err
		}
		_, _, err = kernel.ConnectReadPipe(co, func() *pipePinger { return p }, r2)
		return struct{}{}, err
	})
	if err := l.RunUntilComplete(task); err != nil {
		b.Fatal(err)
	}
	run := func(n int) {
		p.left = n
		p.out.Write(p.msg)
		l.RunForever()
	}
	run(100) // warm up
	b.ReportAllocs()
	b.ResetTimer()
	run(b.N)
}
