package plugin_test

import (
	"context"
	"fmt"
	"syscall"

	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// Incidents counts what supervision had to do, on the host and without a
// round trip: here a plugin killed behind the supervisor's back is noticed
// by the next Wait, counted as an exit, and restarted.
func ExampleRemoteSelector_Incidents() {
	sel, err := plugin.Launch(context.Background(), sdk.Selectors, plugin.Spec{Name: "testpoll"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sel.Close()
	rs := sel.(*plugin.RemoteSelector)
	fmt.Printf("%+v\n", rs.Incidents())
	st, err := rs.Stats(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	syscall.Kill(st.Pid, syscall.SIGKILL)
	sel.Wait(make([]sdk.Event, 4), 0) // notices, restarts, returns 0
	inc := rs.Incidents()
	fmt.Println(inc.Restarts, inc.Exits, inc.Unanswered, inc.ProtocolViolations, inc.Failures(), inc.GaveUp)
	// Output:
	// {Restarts:0 Exits:0 Unanswered:0 ProtocolViolations:0 GaveUp:false Last:}
	// 1 1 0 0 1 false
}
