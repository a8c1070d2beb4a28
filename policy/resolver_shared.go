package policy

import (
	"context"
	"io"
	"sync"

	"github.com/loopkernel/loopkernel/sdk"
)

// Loops share their resolver. A resolver's cache is worth what it holds,
// and a plugin resolver is a process: one per loop would give every loop a
// cold cache of its own and a process each, where asyncio's getaddrinfo
// shares the system's. So the loops a process builds with the same
// resolver spec (and fallback) share one back-end, opened by the first of
// them and closed when the last one closes; the next loop opens a new one.
// sdk.Resolver is safe for concurrent use, so loops on several goroutines
// may share it.

// sharedKey names a shared resolver: the spec and what it falls back to.
type sharedKey struct{ spec, fallback string }

// sharedResolver is one opened back-end and how many loops hold it.
type sharedResolver struct {
	key  sharedKey
	r    sdk.Resolver
	refs int
}

var resolvers struct {
	sync.Mutex
	open map[sharedKey]*sharedResolver
}

// openSharedResolver returns a handle on the process's resolver for spec,
// opening it if no loop holds one. The handle's Close releases it. The
// mutex is held across the open, so two loops built at once start one
// plugin, not two.
func openSharedResolver(ctx context.Context, spec, fallback string) (sdk.Resolver, error) {
	key := sharedKey{spec, fallback}
	resolvers.Lock()
	defer resolvers.Unlock()
	s := resolvers.open[key]
	if s == nil {
		r, err := openBackend(ctx, sdk.Resolvers, spec, fallback)
		if err != nil {
			return nil, err
		}
		s = &sharedResolver{key: key, r: r}
		if resolvers.open == nil {
			resolvers.open = make(map[sharedKey]*sharedResolver)
		}
		resolvers.open[key] = s
	}
	s.refs++
	h := &resolverHandle{Resolver: s.r, s: s}
	if c, ok := s.r.(sdk.CachedResolver); ok {
		// Keep the loop-goroutine fast path of an in-process cache.
		return &cachedResolverHandle{resolverHandle: h, c: c}, nil
	}
	return h, nil
}

// release drops one loop's hold; the last one closes the back-end.
func (s *sharedResolver) release() error {
	resolvers.Lock()
	s.refs--
	last := s.refs == 0
	if last && resolvers.open[s.key] == s {
		delete(resolvers.open, s.key)
	}
	resolvers.Unlock()
	if c, ok := s.r.(io.Closer); ok && last {
		return c.Close()
	}
	return nil
}

// resolverHandle is one loop's hold on a shared resolver: the loop owns
// it and closes it in Close, which releases the hold once.
type resolverHandle struct {
	sdk.Resolver
	s    *sharedResolver
	once sync.Once
}

// Unwrap returns the shared back-end itself (a *plugin.RemoteResolver for a
// plugin placement, say), for what only it offers, such as its statistics.
func (h *resolverHandle) Unwrap() sdk.Resolver { return h.s.r }

func (h *resolverHandle) Close() error {
	var err error
	h.once.Do(func() { err = h.s.release() })
	return err
}

// cachedResolverHandle is a handle on a resolver that answers from memory
// on the loop goroutine (sdk.CachedResolver).
type cachedResolverHandle struct {
	*resolverHandle
	c sdk.CachedResolver
}

func (h *cachedResolverHandle) GetaddrinfoCached(host, port string, hints sdk.AddrinfoHints) ([]sdk.Addrinfo, bool) {
	return h.c.GetaddrinfoCached(host, port, hints)
}
