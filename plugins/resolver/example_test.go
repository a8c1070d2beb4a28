package resolver_test

import (
	"context"
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/plugins/resolver"
	"github.com/loopkernel/loopkernel/sdk"
)

// Numeric hosts resolve without a lookup; the loop uses this to answer at
// once, without a trip to the executor.
func ExampleNumeric() {
	ais, ok, err := resolver.Numeric("127.0.0.1", "8080", sdk.AddrinfoHints{SockType: unix.SOCK_STREAM})
	fmt.Println(ok, err, len(ais), ais[0].Addr)
	// Output: true <nil> 1 127.0.0.1:8080
}

// The default resolver is Go's, behind the sdk.Resolver seam.
func ExampleNew() {
	var r sdk.Resolver = resolver.New(net.DefaultResolver)
	ais, err := r.Getaddrinfo(context.Background(), "::1", "http", sdk.AddrinfoHints{SockType: unix.SOCK_STREAM})
	fmt.Println(err, ais[0].Addr)
	// Output: <nil> [::1]:80
}
