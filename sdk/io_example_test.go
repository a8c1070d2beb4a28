package sdk_test

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/driver/readiness"
	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// A caller asks a driver for an optional operation before relying on it,
// and names the capability when it is missing.
func ExampleDriverCapabilities_Has() {
	c := sdk.DriverCapabilities{Name: "example", Family: "proactor", Backend: "uring", Ops: []string{sdk.CapMultishot}}
	for _, op := range []string{sdk.CapMultishot, sdk.CapWatch} {
		if !c.Has(op) {
			fmt.Printf("driver %q lacks capability %q\n", c.Name, op)
			continue
		}
		fmt.Printf("driver %q has %q\n", c.Name, op)
	}
	// Output:
	// driver "example" has "multishot"
	// driver "example" lacks capability "watch"
}

// A family's registry lists what the imported back-end packages registered:
// sdk alone imports none (plugins/proactor registers "uring").
func ExampleProactor() {
	fmt.Println(sdk.Proactors.Family(), len(sdk.Proactors.Names()))
	// Output: proactor 0
}

// A write the socket may not take whole: TryWrite first (nothing waits),
// then Write with a completion for the rest, run from what Poll returns.
func ExampleFD_Write() {
	sel, err := selector.NewPoll()
	if err != nil {
		fmt.Println(err)
		return
	}
	var d sdk.Driver = readiness.New(sel)
	defer d.Close()
	p, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	f, _ := d.Open(p[0])
	defer f.Close()

	msg := []byte("hello, seam")
	n, err := f.TryWrite([][]byte{msg[:5]})
	fmt.Println("tried:", n, err)
	done := false
	f.Write([][]byte{msg[n:]}, func(n int, err error) { fmt.Println("wrote:", n, err); done = true })
	ready := make([]func(), 8)
	for !done {
		k, _ := d.Poll(ready, time.Second)
		for _, cb := range ready[:k] {
			cb()
		}
	}
	buf := make([]byte, 64)
	k, _ := unix.Read(p[1], buf)
	fmt.Println(string(buf[:k]))
	// Output:
	// tried: 5 <nil>
	// wrote: 6 <nil>
	// hello, seam
}
