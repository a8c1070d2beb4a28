package resolver_test

import (
	"context"
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/plugins/resolver"
	"github.com/loopkernel/loopkernel/sdk"
)

// The default resolver is Go's, behind the sdk.Resolver seam.
func ExampleNew() {
	var r sdk.Resolver = resolver.New(net.DefaultResolver)
	ais, err := r.Getaddrinfo(context.Background(), "::1", "http", sdk.AddrinfoHints{SockType: unix.SOCK_STREAM})
	fmt.Println(err, ais[0].Addr)
	// Output: <nil> [::1]:80
}
