package kernel_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/sdk"
)

// rsPair returns a connected pair of non-blocking Unix sockets of sotype,
// closed when the benchmark ends.
func rsPair(t testing.TB, sotype int) (*kernel.Socket, *kernel.Socket) {
	fds, err := unix.Socketpair(unix.AF_UNIX, sotype|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	a, err := kernel.SocketFromFD(fds[0])
	require.NoError(t, err)
	b, err := kernel.SocketFromFD(fds[1])
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// BenchmarkSockPingPong is one 64-byte SockSendall plus SockRecvInto each
// way over a Unix socketpair: two tasks taking turns, each recv waiting on
// the selector.
func BenchmarkSockPingPong(b *testing.B) {
	l := rsLoop(b)
	a, c := rsPair(b, unix.SOCK_STREAM)
	msg := make([]byte, 64)
	b.ReportAllocs()
	_, err := rsRun(b, l, func(co *kernel.Co) (struct{}, error) {
		echo, _ := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
			buf := make([]byte, 64)
			for {
				n, err := kernel.SockRecvInto(co, c, buf)
				if err != nil || n == 0 {
					return struct{}{}, err
				}
				if err := kernel.SockSendall(co, c, buf[:n]); err != nil {
					return struct{}{}, err
				}
			}
		})
		buf := make([]byte, 64)
		for b.Loop() {
			if err := kernel.SockSendall(co, a, msg); err != nil {
				return struct{}{}, err
			}
			for got := 0; got < len(msg); {
				n, err := kernel.SockRecvInto(co, a, buf)
				if err != nil {
					return struct{}{}, err
				}
				got += n
			}
		}
		unix.Shutdown(a.Fd(), unix.SHUT_WR)
		_, err := echo.Await(co)
		return struct{}{}, err
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSockSendfile moves an 8 MiB file over a socketpair per op, with
// zero-copy sendfile(2) and with the read-and-send fallback; compare MB/s.
func BenchmarkSockSendfile(b *testing.B) {
	data := make([]byte, 8<<20)
	p := filepath.Join(b.TempDir(), "f")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"zero-copy", "fallback"} {
		b.Run(mode, func(b *testing.B) {
			f, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			l := rsLoop(b)
			if mode == "fallback" {
				l = newLacking(b, sdk.CapSendfile)
			}
			a, c := rsPair(b, unix.SOCK_STREAM)
			b.SetBytes(int64(len(data)))
			_, err = rsRun(b, l, func(co *kernel.Co) (struct{}, error) {
				sink, _ := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
					buf := make([]byte, 256<<10)
					for {
						n, err := kernel.SockRecvInto(co, c, buf)
						if err != nil || n == 0 {
							return struct{}{}, err
						}
					}
				})
				for b.Loop() {
					if _, err := kernel.SockSendfile(co, a, f, 0, 0, true); err != nil {
						return struct{}{}, err
					}
				}
				unix.Shutdown(a.Fd(), unix.SHUT_WR)
				_, err := sink.Await(co)
				return struct{}{}, err
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}
