package sdk

import (
	"fmt"
	"slices"
	"sync"
)

// Registry is the list of one family's back-ends compiled into this binary,
// by name. There is one per family (Selectors, Resolvers, Executors), and a
// back-end package fills it from init, as database/sql drivers do, so that
// importing the package is what makes its back-ends selectable.
//
// The same entry serves both placements: in process, a policy asks for the
// factory by name and calls it; out of process, the binary re-executes
// itself as a bundled plugin (sdk/plugin.ServeBundled) and serves the same
// factory. Keeping the lists here, rather than in the plugin host, lets
// back-end packages register without pulling in gRPC.
type Registry[T any] struct {
	family string
	mu     sync.RWMutex
	m      map[string]func() (T, error)
}

// The registries of the back-end families.
var (
	// Selectors: readiness back-ends (epoll, poll, a plugin's own).
	Selectors = &Registry[Selector]{family: "selector"}
	// Resolvers: name-resolution back-ends.
	Resolvers = &Registry[Resolver]{family: "resolver"}
	// Executors: back-ends that run registered functions (see Executor).
	Executors = &Registry[Executor]{family: "executor"}
	// Proactors: completion back-ends (see Proactor): io_uring, once
	// plugins/proactor is imported.
	Proactors = &Registry[Proactor]{family: "proactor"}
)

// Family names the family the registry lists, e.g. "selector".
func (r *Registry[T]) Family() string { return r.family }

// Register makes a back-end available under name. Like database/sql.Register
// it panics on an empty name, a nil factory or a name registered twice: each
// is a programming error that would otherwise surface as the wrong back-end
// being used.
func (r *Registry[T]) Register(name string, f func() (T, error)) {
	if name == "" || f == nil {
		panic(fmt.Sprintf("sdk: %s registry: empty name or nil factory", r.family))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]func() (T, error))
	}
	if _, dup := r.m[name]; dup {
		panic(fmt.Sprintf("sdk: %s back-end %q registered twice", r.family, name))
	}
	r.m[name] = f
}

// Lookup returns the factory registered under name.
func (r *Registry[T]) Lookup(name string) (func() (T, error), bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	f, ok := r.m[name]
	return f, ok
}

// New builds the back-end registered under name; an unknown name is an
// error that lists the known ones, since the caller is usually a person who
// mistyped a flag.
func (r *Registry[T]) New(name string) (T, error) {
	f, ok := r.Lookup(name)
	if !ok {
		var zero T
		return zero, fmt.Errorf("no %s back-end %q (have %v): %w", r.family, name, r.Names(), ErrUnknownBackend)
	}
	return f()
}

// Backend is one registered back-end: its name and its factory.
type Backend[T any] struct {
	Name string
	New  func() (T, error)
}

// All lists the registered back-ends sorted by name, for binding a test or
// a benchmark to each of them.
func (r *Registry[T]) All() []Backend[T] {
	names := r.Names()
	out := make([]Backend[T], len(names))
	for i, n := range names {
		f, _ := r.Lookup(n)
		out[i] = Backend[T]{Name: n, New: f}
	}
	return out
}

// Names lists the registered names in sorted order, for help texts and
// error messages.
func (r *Registry[T]) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.m))
	for n := range r.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
