package kernel_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/selector"
)

// The networking tests are written as bodies over a loop factory so the
// conformance suite can later bind them to every back-end and placement;
// here they are bound to the bundled epoll and poll selectors.

type loopFactory func(t *testing.T) *kernel.Loop

type netCase func(t *testing.T, newLoop loopFactory)

func bundledLoop(name string) loopFactory {
	return func(t *testing.T) *kernel.Loop {
		t.Helper()
		sel, err := selector.New(name)
		require.NoError(t, err)
		l := kernel.New(sel)
		t.Cleanup(func() { l.Close() })
		return l
	}
}

// forEachBackend runs body once per bundled selector.
func forEachBackend(t *testing.T, body netCase) {
	for _, b := range selector.Bundled {
		t.Run(b.Name, func(t *testing.T) { body(t, bundledLoop(b.Name)) })
	}
}

// runCo runs body as a task on l until it returns; a watchdog cancels it
// after a generous deadline so a hang fails instead of stalling the suite.
func runCo(t *testing.T, l *kernel.Loop, body func(co *kernel.Co) error) {
	t.Helper()
	task, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) { return struct{}{}, body(co) })
	require.NoError(t, err)
	timedOut := false
	watchdog := time.AfterFunc(30*time.Second, func() {
		l.CallSoonThreadsafe(func() { timedOut = true; task.Cancel() })
	})
	defer watchdog.Stop()
	err = l.RunUntilComplete(task)
	require.False(t, timedOut, "test body timed out")
	require.NoError(t, err)
}

// waitUntil sleeps in short steps until cond holds (or 20 s pass).
func waitUntil(co *kernel.Co, what string, cond func() bool) error {
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		if err := co.Sleep(time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// recProto records everything a stream transport does to it.
type recProto struct {
	tr        kernel.Transport
	made      int
	lost      int
	lostErr   error
	data      bytes.Buffer
	eofs      int
	keepOpen  bool // EOFReceived's answer
	paused    int
	resumed   int
	onData    func(p *recProto, b []byte)
	onEOF     func(p *recProto)
	onMade    func(p *recProto)
	madeOrder []string
	discard   bool // count received bytes in n without keeping them
	n         int
}

func (p *recProto) ConnectionMade(t kernel.BaseTransport) {
	p.made++
	p.tr = t.(kernel.Transport)
	p.madeOrder = append(p.madeOrder, "made")
	if p.onMade != nil {
		p.onMade(p)
	}
}

func (p *recProto) ConnectionLost(err error) {
	p.lost++
	p.lostErr = err
	p.madeOrder = append(p.madeOrder, "lost")
}

func (p *recProto) DataReceived(b []byte) {
	p.n += len(b)
	if !p.discard {
		p.data.Write(b)
	}
	if p.onData != nil {
		p.onData(p, b)
	}
}

func (p *recProto) EOFReceived() bool {
	p.eofs++
	p.madeOrder = append(p.madeOrder, "eof")
	if p.onEOF != nil {
		p.onEOF(p)
	}
	return p.keepOpen
}

func (p *recProto) PauseWriting()  { p.paused++ }
func (p *recProto) ResumeWriting() { p.resumed++ }

// newEcho makes an echo protocol; at EOF it lets the transport close,
// which flushes the echo first, so the peer reads everything, then EOF.
func newEcho() *recProto {
	return &recProto{onData: func(p *recProto, b []byte) { p.tr.Write(b) }}
}

// serverProtos collects the protocols a server's factory made.
type serverProtos struct{ list []*recProto }

func (s *serverProtos) factory(mk func() *recProto) func() *recProto {
	return func() *recProto {
		p := mk()
		s.list = append(s.list, p)
		return p
	}
}

func tcpPort(t *testing.T, srv *kernel.Server, i int) string {
	t.Helper()
	socks := srv.Sockets()
	require.Greater(t, len(socks), i)
	a, ok := socks[i].LocalAddr().(*net.TCPAddr)
	require.True(t, ok, "%T", socks[i].LocalAddr())
	return fmt.Sprint(a.Port)
}

// bigPattern is computed once: filling megabytes byte by byte is slow
// under the race detector.
var bigPattern = func() []byte {
	b := make([]byte, 8<<20)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}()

// pattern returns n recognisable bytes (shared: do not modify).
func pattern(n int) []byte { return bigPattern[:n:n] }

func hasIPv6Loopback() bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// excRecorder installs an exception handler that records every context.
func excRecorder(l *kernel.Loop) *[]kernel.ErrorContext {
	var got []kernel.ErrorContext
	l.SetExceptionHandler(func(_ *kernel.Loop, c kernel.ErrorContext) { got = append(got, c) })
	return &got
}

var errStop = errors.New("stop")

func unixAddr(name string) *net.UnixAddr { return &net.UnixAddr{Name: name, Net: "unix"} }
