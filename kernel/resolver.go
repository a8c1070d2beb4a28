package kernel

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/loopkernel/loopkernel/plugins/resolver"
	"github.com/loopkernel/loopkernel/sdk"
)

// defaultResolver answers lookups for loops without a resolver of their
// own: Go's net.Resolver, in process. It keeps no per-loop state, so one
// value serves every loop.
var defaultResolver sdk.Resolver = resolver.New(nil)

// SetResolver makes the loop resolve names through r (a back-end placed
// in-process or behind a plugin); nil restores the default, Go's resolver.
// Lookups already under way finish on the resolver they started with.
func (l *Loop) SetResolver(r sdk.Resolver) { l.resolver = r }

// Resolver returns the resolver the loop's lookups go to.
func (l *Loop) Resolver() sdk.Resolver {
	if l.resolver == nil {
		return defaultResolver
	}
	return l.resolver
}

// Getaddrinfo resolves host and port (asyncio: loop.getaddrinfo). port is a
// number, a service name or "" (port 0); hints narrow the results as the
// family, type, proto and flags arguments do.
//
// A numeric host with a numeric port is answered on the spot: the future
// is already done when Getaddrinfo returns and no goroutine is involved,
// which is what makes connecting to "127.0.0.1:8080" cost no lookup.
// Anything else goes to the loop's resolver on the default executor, since a
// lookup may block for seconds. Cancelling the future abandons the lookup.
// Errors name the host and port and wrap the resolver's, so errors.As to
// *net.DNSError works.
func (l *Loop) Getaddrinfo(host, port string, hints sdk.AddrinfoHints) (*Future[[]sdk.Addrinfo], error) {
	if err := l.checkUsable(); err != nil {
		return nil, fmt.Errorf("getaddrinfo: %w", err)
	}
	if hints.Flags&sdk.AIAddrConfig == 0 {
		if ai, ok, err := resolver.Numeric(host, port, hints); ok {
			f := CreateFuture[[]sdk.Addrinfo](l)
			if err != nil {
				f.SetException(gaiError(host, port, err))
			} else {
				f.SetResult(ai)
			}
			return f, nil
		}
	}
	r := l.Resolver()
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
	r := l.Resolver()
	return offLoop(l, "getnameinfo", func(ctx context.Context) (sdk.NameInfo, error) {
		ni, err := r.Getnameinfo(ctx, addr, flags)
		if err != nil {
			return ni, fmt.Errorf("getnameinfo(%v, %#x): %w", addr, flags, err)
		}
		return ni, nil
	})
}

// offLoop runs a blocking lookup on the default executor with a context
// that is cancelled when the returned future is done, so cancelling the
// future (or the task awaiting it) abandons the lookup instead of leaving it
// to run on.
func offLoop[T any](l *Loop, op string, fn func(ctx context.Context) (T, error)) (*Future[T], error) {
	ctx, cancel := context.WithCancel(context.Background())
	f, err := RunInExecutor(l, nil, func() (T, error) { return fn(ctx) })
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	f.addDone(cancel)
	return f, nil
}
