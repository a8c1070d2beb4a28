package conformance_test

import (
	"fmt"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// A resolver spec binds the resolver suite to a back-end and placement;
// the cases that need a back-end's own servers and files run only where it
// takes settings (the go resolver reads the system's files and skips them).
func ExampleResolverBinding() {
	for _, spec := range []string{"go", "dns"} {
		cfg, err := conformance.ResolverBinding(spec, plugin.Options{})
		if err != nil {
			panic(err)
		}
		fmt.Println(cfg.Subject, cfg.Settable, cfg.Kill != nil, len(conformance.ResolverSuite(cfg).Cases) > 10)
	}
	// Output:
	// go false false true
	// dns true false true
}
