package proactorplane_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/driver/completion"
	"github.com/loopkernel/loopkernel/plugins/proactor"
	"github.com/loopkernel/loopkernel/sdk"
)

// BenchmarkEcho64 is a 64-byte echo round trip through a driver, in
// process (uring) and over the plane (plane), in the same run: the ratio
// of the two is the plane's cost per request. allocs/op must be 0.
func BenchmarkEcho64(b *testing.B) {
	b.Run("uring", func(b *testing.B) {
		benchEcho(b, func() (sdk.Driver, error) {
			u, err := proactor.New()
			if err != nil {
				return nil, err
			}
			return completion.New(u)
		})
	})
	b.Run("plane", func(b *testing.B) { benchEcho(b, pairDriver(b)) })
}

func benchEcho(b *testing.B, mk func() (sdk.Driver, error)) {
	d, err := mk()
	if err != nil {
		b.Skip(err)
	}
	defer d.Close()
	ln, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(ln)
	unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	unix.Listen(ln, 16)
	sa, _ := unix.Getsockname(ln)
	lf, _ := d.Open(ln)
	var conn sdk.FD
	buf := make([]byte, 4096)
	out := make([]byte, 4096)
	bufs := make([][]byte, 1)
	echoed := 0
	onWrite := func(n int, err error) { echoed += n }
	onRead := func(p []byte, err error) {
		if err != nil {
			return
		}
		n := copy(out, p)
		bufs[0] = out[:n]
		conn.Write(bufs, onWrite)
	}
	alloc := func(int) []byte { return buf }
	lf.Accept(16, func(fd int, _ *sdk.SockAddr, err error) {
		if err == nil {
			conn, _ = d.Open(fd)
			conn.ReadStart(alloc, onRead)
		}
	})
	cl, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(cl)
	unix.Connect(cl, sa)
	ready := make([]func(), 64)
	msg := make([]byte, 64)
	in := make([]byte, 64)
	turn := func() {
		want := echoed + 64
		unix.Write(cl, msg)
		for echoed < want {
			n, err := d.Poll(ready, time.Second)
			if err != nil {
				b.Fatal(err)
			}
			for _, f := range ready[:n] {
				f()
			}
		}
		for got := 0; got < 64; {
			n, _ := unix.Read(cl, in)
			got += n
		}
	}
	turn()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		turn()
	}
	b.StopTimer()
	conn.Close()
	lf.Close()
}
