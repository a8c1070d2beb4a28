package kernel

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/loopkernel/loopkernel/internal/addrinfo"
	"github.com/loopkernel/loopkernel/sdk"
)

// Getaddrinfo resolves host and port (asyncio: loop.getaddrinfo). port is a
// number, a service name or "" (port 0); hints narrow the results as the
// family, type, proto and flags arguments do.
//
// A numeric host with a numeric port is answered on the spot: the future
// is already done when Getaddrinfo returns and no goroutine is involved,
// which is what makes connecting to "127.0.0.1:8080" cost no lookup.
// A resolver that keeps a cache (sdk.CachedResolver) is asked first, on the
// loop goroutine, and a hit is answered the same way. Anything else goes to
// the loop's resolver on the default executor, since a lookup may block for
// seconds. Cancelling the future abandons the lookup.
// Errors name the host and port and wrap the resolver's, so errors.As to
// *net.DNSError works.
func (l *Loop) Getaddrinfo(host, port string, hints sdk.AddrinfoHints) (*Future[[]sdk.Addrinfo], error) {
	if err := l.checkUsable(); err != nil {
		return nil, fmt.Errorf("getaddrinfo: %w", err)
	}
	if hints.Flags&sdk.AIAddrConfig == 0 {
		if ai, ok, err := addrinfo.Numeric(host, port, hints); ok {
			f := CreateFuture[[]sdk.Addrinfo](l)
			if err != nil {
				f.SetException(gaiError(host, port, err))
			} else {
				f.SetResult(ai)
			}
			return f, nil
		}
	}
	r, err := l.resolverOrErr()
	if err != nil {
		return nil, fmt.Errorf("getaddrinfo: %w", err)
	}
	if cr, ok := r.(sdk.CachedResolver); ok {
		if ai, ok := cr.GetaddrinfoCached(host, port, hints); ok {
			f := CreateFuture[[]sdk.Addrinfo](l)
			f.SetResult(ai)
			return f, nil
		}
	}
	return offLoop(l, "getaddrinfo", func(ctx context.Context) ([]sdk.Addrinfo, error) {
		ai, err := r.Getaddrinfo(ctx, host, port, hints)
		if err != nil {
			return nil, gaiError(host, port, err)
		}
		return ai, nil
	})
}

func gaiError(host, port string, err error) error {
	return fmt.Errorf("getaddrinfo(%q, %q): %w", host, port, err)
}

// Getnameinfo turns an address back into a host and service name (asyncio:
// loop.getnameinfo); flags are the sdk.NI constants. With both
// NINumericHost and NINumericServ the answer needs no lookup and the future
// is done at once; otherwise the resolver runs on the default executor.
func (l *Loop) Getnameinfo(addr netip.AddrPort, flags int) (*Future[sdk.NameInfo], error) {
	if err := l.checkUsable(); err != nil {
		return nil, fmt.Errorf("getnameinfo: %w", err)
	}
	const numeric = sdk.NINumericHost | sdk.NINumericServ
	if flags&^(numeric|sdk.NIDgram) == 0 && flags&numeric == numeric && addr.IsValid() {
		f := CreateFuture[sdk.NameInfo](l)
		f.SetResult(sdk.NameInfo{Host: addr.Addr().String(), Service: strconv.Itoa(int(addr.Port()))})
		return f, nil
	}
	r, err := l.resolverOrErr()
	if err != nil {
		return nil, fmt.Errorf("getnameinfo: %w", err)
	}
	return offLoop(l, "getnameinfo", func(ctx context.Context) (sdk.NameInfo, error) {
		ni, err := r.Getnameinfo(ctx, addr, flags)
		if err != nil {
			return ni, fmt.Errorf("getnameinfo(%v, %#x): %w", addr, flags, err)
		}
		return ni, nil
	})
}
