package dataplane_test

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/dataplane"
)

// The two ends of the data plane in one process: Serve answers with a real
// selector (in a plugin it runs in the plugin process), and the Client is
// the sdk.Selector the kernel drives. The descriptor stays the host's; the
// plugin side watches a copy passed with SCM_RIGHTS.
func Example() {
	host, plug, err := dataplane.Socketpair()
	if err != nil {
		fmt.Println(err)
		return
	}
	real, _ := selector.NewEpoll()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go dataplane.Serve(ctx, plug, real, hclog.NewNullLogger())

	c, err := dataplane.NewClient(host, hclog.NewNullLogger())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	var p [2]int
	unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC)
	defer unix.Close(p[0])
	defer unix.Close(p[1])

	tok := sdk.MakeToken(1, 1)
	c.Register(p[0], tok, sdk.Read) // sent with the next Wait
	unix.Write(p[1], []byte("x"))
	events := make([]sdk.Event, 8)
	n, err := c.Wait(events, time.Second)
	fmt.Println(n, err, events[0].Token, events[0].Events)
	// Output: 1 <nil> 1.1 read
}
