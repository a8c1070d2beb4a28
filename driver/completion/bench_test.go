package completion_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkPingPong: one 64-byte write and its read back per op through the
// completion driver; -benchmem shows the per-event path allocates nothing.
func BenchmarkPingPong(b *testing.B) {
	d, err := newUring(b)()
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	fa, _ := d.Open(p[0])
	fb, _ := d.Open(p[1])
	msg := [][]byte{make([]byte, 64)}
	rbuf := make([]byte, 4096)
	got, wrote := 0, 0
	alloc := func(int) []byte { return rbuf }
	onRead := func(data []byte, err error) { got += len(data) }
	onWrite := func(n int, err error) { wrote += n }
	if err := fb.ReadStart(alloc, onRead); err != nil {
		b.Fatal(err)
	}
	ready := make([]func(), 64)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		got = 0
		if err := fa.Write(msg, onWrite); err != nil {
			b.Fatal(err)
		}
		for got < 64 {
			n, err := d.Poll(ready, time.Second)
			if err != nil {
				b.Fatal(err)
			}
			for _, cb := range ready[:n] {
				cb()
			}
		}
	}
}
