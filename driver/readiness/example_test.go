package readiness_test

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/driver/readiness"
	"github.com/loopkernel/loopkernel/plugins/selector"
)

// The seam driven by hand, as the kernel drives it: open a descriptor,
// start reading with a buffer provider, and run what Poll returns.
func Example() {
	sel, err := selector.NewEpoll()
	if err != nil {
		fmt.Println(err)
		return
	}
	d := readiness.New(sel)
	defer d.Close()
	p, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(p[0])
	defer unix.Close(p[1])

	f, err := d.Open(p[0])
	if err != nil {
		fmt.Println(err)
		return
	}
	buf := make([]byte, 64)
	got := ""
	f.ReadStart(func(int) []byte { return buf }, func(data []byte, err error) { got = string(data) })
	unix.Write(p[1], []byte("hello"))

	ready := make([]func(), 16)
	for got == "" {
		n, err := d.Poll(ready, time.Second)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, cb := range ready[:n] {
			cb() // the kernel runs these in its next batch
		}
	}
	f.Close()
	fmt.Println(got)
	// Output: hello
}
