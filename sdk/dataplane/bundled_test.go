package dataplane_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	_ "github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/dataplane"
)

// serveBundled runs Serve over a bundled selector in a goroutine and
// returns a Client for it.
func serveBundled(t testing.TB, b sdk.Backend[sdk.Selector]) *dataplane.Client {
	t.Helper()
	host, pconn, err := dataplane.Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	sel, err := b.New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dataplane.Serve(ctx, pconn, sel, hclog.NewNullLogger()) }()
	c, err := dataplane.NewClient(host, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Serve: %v", err)
		}
		pconn.Close()
		sel.Close()
	})
	return c
}

// TestBundledSelectorsThroughDataPlane runs the shipped epoll and poll
// back-ends behind the data plane: capabilities cross in the hello, readiness
// crosses both ways, and regular files follow the back-end's capability.
func TestBundledSelectorsThroughDataPlane(t *testing.T) {
	for _, b := range sdk.Selectors.All() {
		t.Run(b.Name, func(t *testing.T) {
			c := serveBundled(t, b)
			if got := c.Capabilities().Name; got != b.Name {
				t.Fatalf("Capabilities().Name = %q, want %q", got, b.Name)
			}
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fds[0])
			defer unix.Close(fds[1])
			rd, wr := sdk.MakeToken(1, 1), sdk.MakeToken(2, 1)
			if err := c.Register(fds[0], rd, sdk.Read); err != nil {
				t.Fatal(err)
			}
			if err := c.Register(fds[1], wr, sdk.Write); err != nil {
				t.Fatal(err)
			}
			if _, err := unix.Write(fds[1], []byte("x")); err != nil {
				t.Fatal(err)
			}
			evs := make([]sdk.Event, 8)
			n, err := c.Wait(evs, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			got := map[sdk.Token]sdk.Events{}
			for _, e := range evs[:n] {
				got[e.Token] |= e.Events
			}
			if got[rd] != sdk.Read || got[wr] != sdk.Write || len(got) != 2 {
				t.Fatalf("events %v, want %v read and %v write", evs[:n], rd, wr)
			}

			f, err := os.CreateTemp(t.TempDir(), "regular")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			err = c.Register(int(f.Fd()), sdk.MakeToken(3, 1), sdk.Read)
			if c.Capabilities().RegularFiles {
				if err != nil {
					t.Fatalf("%s accepts regular files, Register = %v", b.Name, err)
				}
				if err := c.Unregister(sdk.MakeToken(3, 1)); err != nil {
					t.Fatal(err)
				}
			} else if !errors.Is(err, unix.EPERM) {
				t.Fatalf("%s refuses regular files: Register = %v, want EPERM up front", b.Name, err)
			}
			if _, err := c.Wait(evs, 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// BenchmarkBundledRoundTrip is the empty-iteration exchange over each shipped
// back-end, next to that back-end's in-process Wait(0).
func BenchmarkBundledRoundTrip(b *testing.B) {
	for _, be := range sdk.Selectors.All() {
		b.Run("dataplane-"+be.Name, func(b *testing.B) {
			c := serveBundled(b, be)
			evs := make([]sdk.Event, 64)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Wait(evs, 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "µs/roundtrip")
		})
		b.Run("inprocess-"+be.Name, func(b *testing.B) {
			sel, err := be.New()
			if err != nil {
				b.Fatal(err)
			}
			defer sel.Close()
			evs := make([]sdk.Event, 64)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := sel.Wait(evs, 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "µs/roundtrip")
		})
	}
}
