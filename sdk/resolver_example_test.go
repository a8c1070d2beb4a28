package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/loopkernel/loopkernel/sdk"
)

// memResolver answers one name from memory: what a CachedResolver offers
// the kernel, which takes such an answer on the loop goroutine.
type memResolver struct{}

func (memResolver) Getaddrinfo(context.Context, string, string, sdk.AddrinfoHints) ([]sdk.Addrinfo, error) {
	return nil, errors.New("would query")
}

func (memResolver) Getnameinfo(context.Context, netip.AddrPort, int) (sdk.NameInfo, error) {
	return sdk.NameInfo{}, errors.New("would query")
}

func (memResolver) GetaddrinfoCached(host, port string, _ sdk.AddrinfoHints) ([]sdk.Addrinfo, bool) {
	if host != "known.test" || port != "80" {
		return nil, false
	}
	return []sdk.Addrinfo{{Addr: netip.MustParseAddrPort("127.0.0.1:80")}}, true
}

func ExampleCachedResolver() {
	var r sdk.Resolver = memResolver{}
	if cr, ok := r.(sdk.CachedResolver); ok {
		ai, hit := cr.GetaddrinfoCached("known.test", "80", sdk.AddrinfoHints{})
		fmt.Println(hit, ai[0].Addr)
		_, hit = cr.GetaddrinfoCached("other.test", "80", sdk.AddrinfoHints{})
		fmt.Println(hit)
	}
	// Output:
	// true 127.0.0.1:80
	// false
}
