package mutants

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"

	"github.com/loopkernel/loopkernel/plugins/executor"
	"github.com/loopkernel/loopkernel/plugins/resolver"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// Of is a broken back-end of another family (sdk.Resolver, sdk.Executor)
// and the verdict it must get: the resolver and executor suites are
// certified by mutants too, in both placements.
type Of[T any] struct {
	Name  string // registered as "mutant-"+Name in its family's registry
	Fault string
	// Rule must be named by a failure ("rule: "+Rule); PluginRule, if set,
	// replaces it out of process.
	Rule, PluginRule string
	New              func() (T, error)
}

// Resolvers returns the resolver mutants: the bundled dns resolver with one
// fault, taking its settings as the original does (so the cases that need
// their own servers run on it).
func Resolvers() []Of[sdk.Resolver] {
	return []Of[sdk.Resolver]{
		{
			Name:  "drops-aaaa",
			Fault: "every IPv6 address is dropped from an answer",
			Rule:  "A and AAAA are both asked",
			New: wrapResolver(func(_ *mutantResolver, _ string, lookup func() ([]sdk.Addrinfo, error)) ([]sdk.Addrinfo, error) {
				ai, err := lookup()
				kept := ai[:0:0]
				for _, a := range ai {
					if a.Addr.Addr().Is4() {
						kept = append(kept, a)
					}
				}
				return kept, err
			}),
		},
		{
			Name:  "ignores-ttl",
			Fault: "an answer is kept for ever, whatever its TTL (a name is asked about once)",
			Rule:  "an answer is not kept past its TTL",
			New: wrapResolver(func(m *mutantResolver, key string, lookup func() ([]sdk.Addrinfo, error)) ([]sdk.Addrinfo, error) {
				m.mu.Lock()
				old, ok := m.kept[key]
				m.mu.Unlock()
				if ok {
					return old, nil
				}
				ai, err := lookup()
				if err == nil {
					m.mu.Lock()
					m.kept[key] = ai
					m.mu.Unlock()
				}
				return ai, err
			}),
		},
		{
			Name:  "caches-timeouts",
			Fault: "a failed lookup (a timeout included) is answered with the same error for ever, without asking again",
			Rule:  "a timeout is not cached",
			New: wrapResolver(func(m *mutantResolver, key string, lookup func() ([]sdk.Addrinfo, error)) ([]sdk.Addrinfo, error) {
				m.mu.Lock()
				old, ok := m.failed[key]
				m.mu.Unlock()
				if ok {
					return nil, old
				}
				ai, err := lookup()
				if err != nil {
					m.mu.Lock()
					m.failed[key] = err
					m.mu.Unlock()
				}
				return ai, err
			}),
		},
	}
}

// mutantResolver is the dns resolver with Getaddrinfo passed through a
// fault, which gets the lookup's key (host, port, hints) and decides
// whether and how to make it.
type mutantResolver struct {
	inner sdk.Resolver
	fault func(m *mutantResolver, key string, lookup func() ([]sdk.Addrinfo, error)) ([]sdk.Addrinfo, error)

	mu     sync.Mutex
	kept   map[string][]sdk.Addrinfo
	failed map[string]error
}

func wrapResolver(fault func(*mutantResolver, string, func() ([]sdk.Addrinfo, error)) ([]sdk.Addrinfo, error)) func() (sdk.Resolver, error) {
	return func() (sdk.Resolver, error) {
		f, ok := sdk.Resolvers.Lookup(resolver.DNSName)
		if !ok {
			return nil, fmt.Errorf("mutants: no %s resolver registered", resolver.DNSName)
		}
		inner, err := f()
		if err != nil {
			return nil, fmt.Errorf("mutants: %w", err)
		}
		return &mutantResolver{inner: inner, fault: fault, kept: map[string][]sdk.Addrinfo{}, failed: map[string]error{}}, nil
	}
}

func (m *mutantResolver) Getaddrinfo(ctx context.Context, host, port string, hints sdk.AddrinfoHints) ([]sdk.Addrinfo, error) {
	key := fmt.Sprintf("%s|%s|%+v", host, port, hints)
	return m.fault(m, key, func() ([]sdk.Addrinfo, error) { return m.inner.Getaddrinfo(ctx, host, port, hints) })
}

func (m *mutantResolver) Getnameinfo(ctx context.Context, addr netip.AddrPort, flags int) (sdk.NameInfo, error) {
	return m.inner.Getnameinfo(ctx, addr, flags)
}

// Configure passes the settings on, so that the suite points the mutant at
// its own servers (in process and, through the control plane, as a plugin).
func (m *mutantResolver) Configure(key, value string) error {
	cf, ok := m.inner.(plugin.Configurer)
	if !ok {
		return fmt.Errorf("mutants: %T takes no settings", m.inner)
	}
	return cf.Configure(key, value)
}

func (m *mutantResolver) Close() error {
	if c, ok := m.inner.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Executors returns the executor mutants: the bundled goroutine executor
// with one fault.
func Executors() []Of[sdk.Executor] {
	return []Of[sdk.Executor]{
		{
			Name:  "loses-panics",
			Fault: "a call whose function panicked succeeds, with an empty result",
			Rule:  "a panic in the function is the call's *sdk.CallError",
			New: wrapExecutor(func(m *mutantExecutor, ctx context.Context, fn string, arg []byte) ([]byte, error) {
				res, err := m.inner.Call(ctx, fn, arg)
				if ce := (*sdk.CallError)(nil); errors.As(err, &ce) && strings.HasPrefix(ce.Message, "panic:") {
					return []byte("0"), nil
				}
				return res, err
			}),
		},
		{
			Name:  "mixes-results",
			Fault: "each successful call returns the previous successful call's result",
			Rule:  "concurrent calls each get their own result",
			New: wrapExecutor(func(m *mutantExecutor, ctx context.Context, fn string, arg []byte) ([]byte, error) {
				res, err := m.inner.Call(ctx, fn, arg)
				if err != nil {
					return res, err
				}
				m.mu.Lock()
				defer m.mu.Unlock()
				out := m.prev
				m.prev = res
				if out == nil {
					out = res
				}
				return out, nil
			}),
		},
		{
			Name:  "ignores-cancel",
			Fault: "a call's context is not passed on: a cancelled call starts, and its function never learns of it",
			Rule:  "a call whose context is already done fails with its error",
			// Out of process the host refuses a call already cancelled
			// itself; what is left is the running function that is never
			// told.
			PluginRule: "the function's context is cancelled with its caller's",
			New: wrapExecutor(func(m *mutantExecutor, ctx context.Context, fn string, arg []byte) ([]byte, error) {
				return m.inner.Call(context.WithoutCancel(ctx), fn, arg)
			}),
		},
	}
}

// mutantExecutor is the goroutine executor with Call replaced.
type mutantExecutor struct {
	inner sdk.Executor
	call  func(m *mutantExecutor, ctx context.Context, fn string, arg []byte) ([]byte, error)

	mu   sync.Mutex
	prev []byte
}

func wrapExecutor(call func(*mutantExecutor, context.Context, string, []byte) ([]byte, error)) func() (sdk.Executor, error) {
	return func() (sdk.Executor, error) {
		return &mutantExecutor{inner: executor.NewGoroutine(), call: call}, nil
	}
}

func (m *mutantExecutor) Call(ctx context.Context, fn string, arg []byte) ([]byte, error) {
	return m.call(m, ctx, fn, arg)
}

func (m *mutantExecutor) Close() error { return m.inner.Close() }
