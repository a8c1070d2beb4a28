package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/sdk"
)

// Protocols and fixtures shared by the networking cases. Protocol callbacks
// run on the loop goroutine, as do the case bodies' coroutines, so the
// recorders need no locks.

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

// allLost reports whether every protocol in list has lost its connection.
func allLost(list []*recProto) bool {
	for _, p := range list {
		if p.lost == 0 {
			return false
		}
	}
	return true
}

// bufProto is a BufferedProtocol receiving into its own small buffer.
type bufProto struct {
	buf   []byte
	got   bytes.Buffer
	hints []int
	eof   bool
	lost  int
}

func (p *bufProto) ConnectionMade(kernel.BaseTransport) {}
func (p *bufProto) ConnectionLost(error)                { p.lost++ }
func (p *bufProto) GetBuffer(hint int) []byte           { p.hints = append(p.hints, hint); return p.buf }
func (p *bufProto) BufferUpdated(n int)                 { p.got.Write(p.buf[:n]) }
func (p *bufProto) EOFReceived() bool                   { p.eof = true; return false }

// dgProto records a datagram endpoint's events.
type dgProto struct {
	tr      kernel.DatagramTransport
	made    int
	lost    int
	lostErr error
	got     [][]byte
	from    []net.Addr
	errs    []error
	echo    bool
	panicOn string
	paused  int
	resumed int
}

func (p *dgProto) ConnectionMade(t kernel.BaseTransport) {
	p.made++
	p.tr = t.(kernel.DatagramTransport)
}
func (p *dgProto) ConnectionLost(err error) { p.lost++; p.lostErr = err }
func (p *dgProto) DatagramReceived(b []byte, addr net.Addr) {
	if p.panicOn != "" && string(b) == p.panicOn {
		panic("datagram boom")
	}
	p.got = append(p.got, append([]byte(nil), b...))
	p.from = append(p.from, addr)
	if p.echo {
		p.tr.SendTo(b, addr)
	}
}
func (p *dgProto) ErrorReceived(err error) { p.errs = append(p.errs, err) }
func (p *dgProto) PauseWriting()           { p.paused++ }
func (p *dgProto) ResumeWriting()          { p.resumed++ }

// tcpPort is the port of a server's i-th socket.
func (n *nt) tcpPort(srv *kernel.Server, i int) string {
	socks := srv.Sockets()
	if len(socks) <= i {
		n.Errorf("rule: a serving server lists its listening sockets: have %d, want socket %d", len(socks), i)
		n.FailNow()
	}
	a, ok := socks[i].LocalAddr().(*net.TCPAddr)
	if !ok {
		n.Errorf("rule: a TCP server's socket has a *net.TCPAddr, not %T", socks[i].LocalAddr())
		n.FailNow()
	}
	return strconv.Itoa(a.Port)
}

// bigPattern is computed once, when a case first needs it: filling
// megabytes byte by byte is slow under the race detector, and a program
// that links the suite without running it should not pay for it.
var bigPattern = sync.OnceValue(func() []byte {
	b := make([]byte, 8<<20)
	for i := range b {
		b[i] = byte(i*7 + i>>8 + i>>16)
	}
	return b
})

// pattern returns n <= 8 MiB recognisable bytes (shared: do not modify).
func pattern(n int) []byte { return bigPattern()[:n:n] }

// ipv6Loopback reports why ::1 cannot be used, or "" if it can.
func ipv6Loopback() string {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return fmt.Sprintf("needs IPv6 loopback (::1): cannot listen on it here: %v", err)
	}
	l.Close()
	return ""
}

// excRecorder installs an exception handler that records every context.
func excRecorder(l *kernel.Loop) *[]kernel.ErrorContext {
	var got []kernel.ErrorContext
	l.SetExceptionHandler(func(_ *kernel.Loop, c kernel.ErrorContext) { got = append(got, c) })
	return &got
}

func unixAddr(name string) *net.UnixAddr { return &net.UnixAddr{Name: name, Net: "unix"} }

// abstractName is a Linux abstract socket name ("@...") unique to this
// process and call.
var abstractSeq atomic.Uint64

func abstractName(what string) string {
	return fmt.Sprintf("@loopkernel-conformance-%s-%d-%d", what, os.Getpid(), abstractSeq.Add(1))
}

// closedTCPPort returns a loopback TCP port nothing listens on now.
func (n *nt) closedTCPPort() int {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	n.fixture("listen on loopback", err)
	port := ln.Addr().(*net.TCPAddr).Port
	n.fixture("close listener", ln.Close())
	return port
}

// closedUDPPort returns a loopback UDP port nothing listens on now.
func (n *nt) closedUDPPort() int {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	n.fixture("listen on loopback UDP", err)
	port := c.LocalAddr().(*net.UDPAddr).Port
	n.fixture("close UDP socket", c.Close())
	return port
}

// tcpListener is a kernel socket listening on 127.0.0.1 and its port.
func (n *nt) tcpListener() (*kernel.Socket, int) {
	s, err := kernel.NewSocket(unix.AF_INET, unix.SOCK_STREAM, 0)
	n.fixture("socket", err)
	n.Cleanup(func() { s.Close() })
	n.fixture("bind", s.Bind(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}))
	n.fixture("listen", s.Listen(0))
	return s, s.LocalAddr().(*net.TCPAddr).Port
}

// fakeResolver answers names from a table, and can hold a lookup until
// its context is cancelled.
type fakeResolver struct {
	answers   map[string][]netip.Addr
	hold      bool
	cancelled atomic.Bool
	calls     atomic.Int32
}

func (r *fakeResolver) Getaddrinfo(ctx context.Context, host, port string, hints sdk.AddrinfoHints) ([]sdk.Addrinfo, error) {
	r.calls.Add(1)
	if r.hold {
		<-ctx.Done()
		r.cancelled.Store(true)
		return nil, ctx.Err()
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, &net.DNSError{Err: "bad port", Name: port}
	}
	var out []sdk.Addrinfo
	for _, a := range r.answers[host] {
		fam := syscall.AF_INET6
		if a.Is4() {
			fam = syscall.AF_INET
		}
		out = append(out, sdk.Addrinfo{Family: fam, SockType: hints.SockType, Protocol: syscall.IPPROTO_TCP, Addr: netip.AddrPortFrom(a, uint16(p))})
	}
	if out == nil {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

func (r *fakeResolver) Getnameinfo(context.Context, netip.AddrPort, int) (sdk.NameInfo, error) {
	return sdk.NameInfo{}, errors.New("not supported by the fake")
}

// exhaustFDs lowers RLIMIT_NOFILE to a little above the highest descriptor
// in use and fills every free number below it, so that the next
// descriptor-creating call in this process fails with EMFILE. The returned
// function frees them and restores the limit (idempotent). Only a case
// marked Alone may call it: every other goroutine of the process is out of
// descriptors meanwhile.
func (n *nt) exhaustFDs() (release func()) {
	var orig unix.Rlimit
	n.fixture("getrlimit", unix.Getrlimit(unix.RLIMIT_NOFILE, &orig))
	// Descriptors of sockets dropped by earlier cases are closed by
	// finalizers; let those run now rather than free a slot mid-case.
	drainFinalizers()
	ents, err := os.ReadDir("/proc/self/fd")
	n.fixture("list /proc/self/fd", err)
	highest := 0
	for _, e := range ents {
		if v, err := strconv.Atoi(e.Name()); err == nil && v > highest {
			highest = v
		}
	}
	lim := orig
	lim.Cur = uint64(highest + 16)
	if lim.Cur > orig.Cur {
		n.Skip(fmt.Sprintf("needs RLIMIT_NOFILE above %d to lower it; the soft limit is %d", lim.Cur, orig.Cur))
	}
	n.fixture("lower RLIMIT_NOFILE", unix.Setrlimit(unix.RLIMIT_NOFILE, &lim))
	var fds []int
	fill := func() {
		for {
			fd, err := unix.Dup(0)
			if err != nil {
				if !errors.Is(err, unix.EMFILE) {
					n.Errorf("fixture: dup: %v", err)
				}
				return
			}
			fds = append(fds, fd)
		}
	}
	done := false
	release = func() {
		if done {
			return
		}
		done = true
		for _, fd := range fds {
			unix.Close(fd)
		}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
			n.Errorf("fixture: restore RLIMIT_NOFILE: %v", err)
		}
	}
	// A case that fails midway must not leave the process without
	// descriptors.
	n.Cleanup(release)
	fill()
	return release
}

// drainFinalizers collects garbage and waits (up to a second) until the
// finalizers it queued have run. runtime.GC only queues them; they run on
// one goroutine in turn, so a sentinel queued last runs after them.
func drainFinalizers() {
	done := make(chan struct{})
	sentinel := new([16]byte)
	runtime.SetFinalizer(sentinel, func(*[16]byte) { close(done) })
	sentinel = nil
	runtime.GC()
	runtime.GC()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}
