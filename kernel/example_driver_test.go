package kernel_test

import (
	"fmt"

	"github.com/loopkernel/loopkernel/driver/readiness"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// A loop on a driver of the I/O seam chosen by the caller: here the
// readiness driver over poll(2), which is what kernel.New(sel) builds; a
// completion driver is passed the same way.
func ExampleNewOnDriver() {
	sel, err := selector.NewPoll()
	if err != nil {
		fmt.Println(err)
		return
	}
	loop := kernel.NewOnDriver(readiness.New(sel))
	defer loop.Close()
	loop.CallSoon(func() { fmt.Println("running on", loop.Driver().Capabilities().Name); loop.Stop() })
	loop.RunForever()
	// Output: running on readiness
}

// What runs underneath a loop, and whether it can watch descriptors
// (AddReader and AddWriter need it).
func ExampleLoop_Driver() {
	loop := newEpollLoop()
	defer loop.Close()
	c := loop.Driver().Capabilities()
	fmt.Println(c.Family, c.Backend, c.Has(sdk.CapWatch))
	// Output: selector epoll true
}
