package plugin_test

import (
	"context"
	"fmt"
	"syscall"
	"time"

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
	// Wait notices the death; the replacement starts in the background
	// while Wait keeps returning within its timeout.
	var inc plugin.Incidents
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		sel.Wait(make([]sdk.Event, 4), 10*time.Millisecond)
		if inc = rs.Incidents(); inc.Restarts > 0 {
			break
		}
	}
	fmt.Println(inc.Restarts, inc.Exits, inc.Unanswered, inc.ProtocolViolations, inc.Failures(), inc.GaveUp)
	// Output:
	// {Restarts:0 Exits:0 Unanswered:0 ProtocolViolations:0 GaveUp:false Last:}
	// 1 1 0 0 1 false
}
