package policy

import (
	"context"
	"fmt"
	"strings"

	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// The builtin policies: one per bundled in-process selector.
func init() {
	Register(Policy{
		Name:        "epoll",
		Description: "in-process Linux epoll selector (default; cost per wait independent of idle descriptors)",
		Selector:    "epoll",
	})
	Register(Policy{
		Name:        "poll",
		Description: "in-process poll(2) selector (accepts every descriptor kind, regular files included)",
		Selector:    "poll",
	})
}

// openSelector opens the selector a spec names; see Policy.Selector.
//
// EXTENSION POINT (out-of-process placement): specs with the plugin: prefix
// are meant for the selector-plugin host in sdk/plugin (H3). Until that is
// wired here, they fail with an explicit error instead of silently running
// the back-end in-process, and the "epoll-plugin"/"poll-plugin" policies are
// not registered.
func openSelector(_ context.Context, spec string) (sdk.Selector, error) {
	if strings.HasPrefix(spec, pluginPrefix) {
		return nil, fmt.Errorf("selector %q: out-of-process selector plugins are not available in this build", spec)
	}
	return selector.New(spec)
}
