package plugin_test

import (
	"context"
	"fmt"
	"os"

	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// A plugin author's whole main: an sdk.Selector implementation and one
// Serve call (examples/selector-plugin is a complete one in one file).
func ExampleServe() {
	plugin.Serve(plugin.Backends{Name: "my-poll", Selector: selector.NewPoll})
}

// Launch runs a back-end in a process of its own: a bundled one by
// re-executing this binary, whose main (here TestMain) calls ServeBundled
// first. The result is a supervised sdk.Selector.
func ExampleLaunch() {
	sel, err := plugin.Launch(context.Background(), sdk.Selectors, plugin.Spec{Name: "testpoll"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sel.Close()
	st, err := sel.(*plugin.RemoteSelector).Stats(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sel.Capabilities().Name, st.Pid != os.Getpid(), st.Restarts)
	// Output: testpoll true 0
}

// Resolve turns a selector spec into a factory: "NAME" in process,
// "plugin:NAME" or "plugin:/path" out of process.
func ExampleResolve() {
	for _, spec := range []string{"testpoll", "plugin:testpoll"} {
		f, err := plugin.Resolve(sdk.Selectors, spec, plugin.Options{})
		if err != nil {
			fmt.Println(err)
			return
		}
		sel, err := f()
		if err != nil {
			fmt.Println(err)
			return
		}
		_, outOfProcess := sel.(*plugin.RemoteSelector)
		fmt.Println(spec, sel.Capabilities().Name, outOfProcess)
		sel.Close()
	}
	_, err := plugin.Resolve(sdk.Selectors, "no-such-backend", plugin.Options{})
	fmt.Println(err != nil)
	// Output:
	// testpoll testpoll false
	// plugin:testpoll testpoll true
	// true
}
