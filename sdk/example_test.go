package sdk_test

import (
	"fmt"

	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// A token names a registration by slot and generation, so an event for a
// slot's previous occupant is recognisable.
func ExampleMakeToken() {
	tok := sdk.MakeToken(7, 3)
	fmt.Println(tok.Slot(), tok.Gen(), tok)
	// Output: 7 3 7.3
}

func ExampleEvents_String() {
	fmt.Println(sdk.Read | sdk.Hangup)
	fmt.Println(sdk.Events(0))
	// Output:
	// read|hangup
	// none
}

// A back-end registered by name can be placed in process or, through
// sdk/plugin, out of process with the same factory.
func ExampleRegistry_Register() {
	sdk.Selectors.Register("example-poll", selector.NewPoll)
	f, ok := sdk.Selectors.Lookup("example-poll")
	sel, err := f()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sel.Close()
	fmt.Println(ok, sel.Capabilities().Name)
	// Output: true poll
}
