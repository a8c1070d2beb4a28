package sdk_test

import (
	"fmt"

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

// No bundled back-end implements the Proactor family yet; its registry
// lists none.
func ExampleProactor() {
	fmt.Println(sdk.Proactors.Family(), len(sdk.Proactors.Names()))
	// Output: proactor 0
}
