package sdk_test

import (
	"context"
	"errors"
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

// A function registered by name can run in any executor, in this process or
// in a worker that is this program re-executed; RunFunc is what the
// executor does with a call.
func ExampleNewFunc() {
	add := sdk.NewFunc("example.add", func(_ context.Context, xy [2]int) (int, error) {
		return xy[0] + xy[1], nil
	})
	arg, _ := add.Encode([2]int{2, 3})
	res, err := sdk.RunFunc(context.Background(), add.Name(), arg)
	sum, _ := add.Decode(res)
	fmt.Println(string(arg), sum, err)
	// Output: [2,3] 5 <nil>
}

// A function's error reaches the caller as a *CallError, the same in every
// placement.
func ExampleRunFunc() {
	sdk.RegisterFunc("example.refuse", func(context.Context, []byte) ([]byte, error) {
		return nil, errors.New("not today")
	})
	_, err := sdk.RunFunc(context.Background(), "example.refuse", nil)
	var ce *sdk.CallError
	fmt.Println(errors.As(err, &ce), ce.Message)
	_, err = sdk.RunFunc(context.Background(), "example.missing", nil)
	fmt.Println(errors.Is(err, sdk.ErrUnknownFunc))
	// Output:
	// true not today
	// true
}

// Registry.New builds a back-end by name, or says which names exist.
func ExampleRegistry_New() {
	_, err := sdk.Selectors.New("kqueue")
	fmt.Println(errors.Is(err, sdk.ErrUnknownBackend))
	sel, err := sdk.Selectors.New("epoll")
	fmt.Println(sdk.Selectors.Family(), sel.Capabilities().Name, err)
	sel.Close()
	// Output:
	// true
	// selector epoll <nil>
}
