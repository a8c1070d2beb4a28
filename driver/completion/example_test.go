package completion_test

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/driver/completion"
	"github.com/loopkernel/loopkernel/plugins/proactor"
)

// A loop's I/O on io_uring: the completion driver over the io_uring
// proactor, written to and read from through the seam. Where io_uring is
// refused, proactor.New says why and names the epoll policy.
func ExampleNew() {
	p, err := proactor.New()
	if err != nil {
		fmt.Println(err)
		return
	}
	d, err := completion.New(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()
	fds, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	a, _ := d.Open(fds[0])
	b, _ := d.Open(fds[1])
	defer a.Close()
	defer b.Close()

	buf := make([]byte, 64)
	got := ""
	b.ReadStart(func(int) []byte { return buf }, func(data []byte, err error) { got += string(data) })
	a.Write([][]byte{[]byte("hello, "), []byte("ring")}, func(n int, err error) { fmt.Println("wrote", n, err) })
	ready := make([]func(), 16)
	for deadline := time.Now().Add(5 * time.Second); len(got) < 11 && time.Now().Before(deadline); {
		n, _ := d.Poll(ready, 100*time.Millisecond)
		for _, cb := range ready[:n] {
			cb()
		}
	}
	fmt.Println("read", got)
	fmt.Println(d.Capabilities().Family, d.Capabilities().Backend)
	// Output:
	// wrote 11 <nil>
	// read hello, ring
	// proactor uring
}
