package proactorplane_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// TestPlaneEcho accepts, reads and writes one connection through the
// plane, with the driver directly (no loop): the smallest round trip.
func TestPlaneEcho(t *testing.T) {
	d, err := pairDriver(t)()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ln, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(ln)
	unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	unix.Listen(ln, 16)
	sa, _ := unix.Getsockname(ln)
	lf, err := d.Open(ln)
	if err != nil {
		t.Fatal(err)
	}
	var conn sdk.FD
	var got []byte
	buf := make([]byte, 100)
	wrote := -1
	lf.Accept(16, func(fd int, _ *sdk.SockAddr, err error) {
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		conn, _ = d.Open(fd)
		conn.ReadStart(func(int) []byte { return buf }, func(b []byte, err error) {
			if err != nil {
				return
			}
			got = append(got, b...)
			conn.Write([][]byte{append([]byte(nil), b...)}, func(n int, err error) { wrote = n })
		})
	})
	cl, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(cl)
	if err := unix.Connect(cl, sa); err != nil {
		t.Fatal(err)
	}
	unix.Write(cl, []byte("hello"))
	ready := make([]func(), 64)
	deadline := time.Now().Add(5 * time.Second)
	for wrote < 0 && time.Now().Before(deadline) {
		n, err := d.Poll(ready, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range ready[:n] {
			f()
		}
	}
	if string(got) != "hello" || wrote != 5 {
		t.Fatalf("got %q, wrote %d", got, wrote)
	}
	echo := make([]byte, 10)
	n, _ := unix.Read(cl, echo)
	if string(echo[:n]) != "hello" {
		t.Fatalf("echo %q", echo[:n])
	}
	conn.Close()
	lf.Close()
}
