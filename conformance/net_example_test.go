package conformance_test

import (
	"context"
	"fmt"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/driver/readiness"
	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// Certifying a driver of the I/O seam against the networking contract:
// NetConfig.Driver builds the driver each loop runs on (here the readiness
// driver over poll; a completion driver is passed the same way).
func ExampleNetConfig() {
	cfg := conformance.NetConfig{Driver: func() (sdk.Driver, error) {
		sel, err := selector.NewPoll()
		if err != nil {
			return nil, err
		}
		return readiness.New(sel), nil
	}}
	res, err := conformance.Run(context.Background(), conformance.NetSuite(cfg), conformance.Factory(selector.NewPoll),
		conformance.Options{Match: func(name string) bool { return name == "net/stream/round-trip" }})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range res {
		fmt.Println(r.Case, r.Status)
	}
	// Output: net/stream/round-trip pass
}
