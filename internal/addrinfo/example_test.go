package addrinfo_test

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/addrinfo"
	"github.com/loopkernel/loopkernel/sdk"
)

// Numeric hosts resolve without a lookup; the loop uses this to answer at
// once, without a trip to the executor.
func ExampleNumeric() {
	ais, ok, err := addrinfo.Numeric("127.0.0.1", "8080", sdk.AddrinfoHints{SockType: unix.SOCK_STREAM})
	fmt.Println(ok, err, len(ais), ais[0].Addr)
	// Output: true <nil> 1 127.0.0.1:8080
}
