package policy

import (
	"context"
	"os"
	"sync"

	"github.com/hashicorp/go-hclog"

	// The bundled back-ends register themselves in sdk's registries; the
	// out-of-process placement re-executes this binary, whose main calls
	// plugin.ServeBundled, which serves the same registration.
	_ "github.com/loopkernel/loopkernel/plugins/executor"
	_ "github.com/loopkernel/loopkernel/plugins/resolver"
	_ "github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// The builtin policies: every bundled selector in both placements.
func init() {
	Register(Policy{
		Name:        "epoll",
		Description: "in-process Linux epoll selector (cost per wait independent of idle descriptors)",
		Selector:    "epoll",
	})
	Register(Policy{
		Name:        "poll",
		Description: "in-process poll(2) selector (accepts every descriptor kind, regular files too)",
		Selector:    "poll",
	})
	Register(Policy{
		Name:        "epoll-plugin",
		Description: "epoll in a supervised plugin process (this binary re-executed; readiness over the data plane)",
		Selector:    pluginPrefix + "epoll",
	})
	Register(Policy{
		Name:        "poll-plugin",
		Description: "poll in a supervised plugin process (this binary re-executed; readiness over the data plane)",
		Selector:    pluginPrefix + "poll",
	})
}

// openBackend opens the back-end of a family that a spec names (see
// Policy.Selector): a back-end registered in the family's registry, in
// process; or through sdk/plugin a bundled back-end or a plugin executable
// out of process, supervised. Plugin executables named by NAME are looked up
// in $LOOPKERNEL_PLUGIN_DIR.
//
// Plugin supervision events (a plugin that crashed or hung and was
// restarted, or given up on) are logged at warning level on stderr: they
// are rare, and a loop that silently lost and regained a back-end would be a
// puzzle for whoever watches it.
func openBackend[T any](ctx context.Context, reg *sdk.Registry[T], spec string) (T, error) {
	return plugin.Open(ctx, reg, spec, plugin.Options{Template: plugin.Spec{Logger: pluginLogger()}})
}

var pluginLogger = sync.OnceValue(func() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "loopkernel", Level: hclog.Warn, Output: os.Stderr})
})
