package sdk

import (
	"fmt"
	"slices"
	"sync"
)

// Factory makes a new, independent Selector.
type Factory func() (Selector, error)

// The registry is the one list of back-ends compiled into this binary. The
// same entry serves both placements: in-process, a caller asks for the
// factory by name; out-of-process, the binary re-executes itself as a bundled
// plugin and serves that same factory (see sdk/plugin.ServeBundled). Keeping
// the list here, rather than in the plugin host package, lets back-end
// packages register themselves from init without pulling in gRPC.
var registry struct {
	sync.RWMutex
	m map[string]Factory
}

// Register makes a back-end available under name. It is meant for init
// functions, so like database/sql.Register it panics on an empty name, a nil
// factory or a name registered twice: all three are programming errors that
// would otherwise surface as the wrong selector being used.
func Register(name string, f Factory) {
	if name == "" || f == nil {
		panic("sdk.Register: empty name or nil factory")
	}
	registry.Lock()
	defer registry.Unlock()
	if registry.m == nil {
		registry.m = make(map[string]Factory)
	}
	if _, dup := registry.m[name]; dup {
		panic(fmt.Sprintf("sdk.Register: back-end %q registered twice", name))
	}
	registry.m[name] = f
}

// Lookup returns the factory registered under name.
func Lookup(name string) (Factory, bool) {
	registry.RLock()
	defer registry.RUnlock()
	f, ok := registry.m[name]
	return f, ok
}

// Registered lists the registered back-end names in sorted order, for help
// texts and error messages.
func Registered() []string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.m))
	for n := range registry.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
