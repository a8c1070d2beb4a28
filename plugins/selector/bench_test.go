package selector

import (
	"testing"

	"github.com/loopkernel/loopkernel/sdk"
	"golang.org/x/sys/unix"
)

// readySelector returns a selector with n readable socketpairs registered and
// an events buffer for them.
func readySelector(tb testing.TB, newSel func() (sdk.Selector, error), n int) (sdk.Selector, []sdk.Event) {
	tb.Helper()
	s, err := newSel()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	for i := 0; i < n; i++ {
		p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
		if _, err := unix.Write(p[1], []byte{1}); err != nil {
			tb.Fatal(err)
		}
		if err := s.Register(p[0], sdk.MakeToken(uint32(i), 1), sdk.Read); err != nil {
			tb.Fatal(err)
		}
	}
	return s, make([]sdk.Event, n)
}

// BenchmarkWait measures one Wait that returns 16 ready events; it must
// report 0 allocs/op.
func BenchmarkWait(b *testing.B) {
	for _, bk := range sdk.Selectors.All() {
		b.Run(bk.Name, func(b *testing.B) {
			s, buf := readySelector(b, bk.New, 16)
			b.ReportAllocs()
			for b.Loop() {
				if n, err := s.Wait(buf, 0); err != nil || n != 16 {
					b.Fatalf("Wait = %d, %v", n, err)
				}
			}
		})
	}
}

// BenchmarkWakeWait measures the cross-goroutine wake-up path: a Wake and the
// Wait it ends, both on one goroutine (no scheduling in the measurement).
func BenchmarkWakeWait(b *testing.B) {
	for _, bk := range sdk.Selectors.All() {
		b.Run(bk.Name, func(b *testing.B) {
			s, buf := readySelector(b, bk.New, 0)
			buf = make([]sdk.Event, 4)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Wake(); err != nil {
					b.Fatal(err)
				}
				if _, err := s.Wait(buf, -1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIdleRegistrations shows why epoll is the default: Wait cost with
// 1000 idle registrations and one ready one.
func BenchmarkIdleRegistrations(b *testing.B) {
	for _, bk := range sdk.Selectors.All() {
		b.Run(bk.Name, func(b *testing.B) {
			s, _ := readySelector(b, bk.New, 1)
			for i := 0; i < 1000; i++ {
				p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
				if err := s.Register(p[0], sdk.MakeToken(uint32(i+1), 1), sdk.Read); err != nil {
					b.Fatal(err)
				}
			}
			buf := make([]sdk.Event, 8)
			b.ReportAllocs()
			for b.Loop() {
				if n, err := s.Wait(buf, 0); err != nil || n != 1 {
					b.Fatalf("Wait = %d, %v", n, err)
				}
			}
		})
	}
}
