package policy

import (
	"context"
	"os"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	// The bundled back-ends register themselves in sdk's registries; the
	// out-of-process placement re-executes this binary, whose main calls
	// plugin.ServeBundled, which serves the same registration.
	"github.com/loopkernel/loopkernel/driver/completion"
	_ "github.com/loopkernel/loopkernel/plugins/executor"
	_ "github.com/loopkernel/loopkernel/plugins/proactor"
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
		Name:        "uring",
		Description: "in-process io_uring proactor (completion driver: one io_uring_enter per iteration; fails naming epoll where io_uring is refused)",
		Selector:    "epoll", // what selector-only commands (conformance of a selector) use
		Proactor:    "uring",
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
//
// fallback, if not empty, names the in-process back-end an out-of-process
// one falls back to (Policy.PluginFallback).
func openBackend[T any](ctx context.Context, reg *sdk.Registry[T], spec, fallback string) (T, error) {
	return plugin.Open(ctx, reg, spec, plugin.Options{Template: plugin.Spec{Logger: pluginLogger(), Fallback: fallback}})
}

// fallbackFor is the in-process back-end of reg's family that spec's
// plugin falls back to when on (Policy.PluginFallback): its twin (the
// bundled back-end of the same name), else def, the family's default.
// Empty when off, or when spec is in process already.
func fallbackFor[T any](on bool, reg *sdk.Registry[T], spec, def string) string {
	rest, ok := strings.CutPrefix(spec, pluginPrefix)
	if !on || !ok {
		return ""
	}
	if !strings.ContainsRune(rest, '/') {
		if _, twin := reg.Lookup(rest); twin {
			return rest
		}
	}
	return def
}

var pluginLogger = sync.OnceValue(func() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "loopkernel", Level: hclog.Warn, Output: os.Stderr})
})

// ProactorOpener opens a completion back-end named by a proactor spec whose
// prefix it was registered under (RegisterProactorPlacement), with ctx
// bounding its start, and returns the I/O driver a loop runs on.
type ProactorOpener func(ctx context.Context, name string) (sdk.Driver, error)

// proactorPlacements maps a spec prefix ("plugin:") to the opener of that
// placement. An out-of-process proactor registers itself here from its own
// file, so this file needs no knowledge of how it runs.
var proactorPlacements sync.Map // string -> ProactorOpener

// RegisterProactorPlacement makes proactor specs that start with prefix
// (Policy.Proactor "PREFIXNAME") open through open, which gets NAME. Meant
// for init functions; a prefix registered twice panics.
func RegisterProactorPlacement(prefix string, open ProactorOpener) {
	if _, dup := proactorPlacements.LoadOrStore(prefix, open); dup {
		panic("policy.RegisterProactorPlacement: prefix " + prefix + " registered twice")
	}
}

// placementOf returns the opener registered for spec's prefix and what
// follows the prefix; ok is false when no placement's prefix starts spec.
func placementOf(spec string) (open ProactorOpener, name string, ok bool) {
	proactorPlacements.Range(func(k, v any) bool {
		if rest, cut := strings.CutPrefix(spec, k.(string)); cut {
			open, name, ok = v.(ProactorOpener), rest, true
		}
		return !ok
	})
	return open, name, ok
}

// openProactor opens the completion back-end a proactor spec names: through
// a registered placement when the spec has its prefix, else the in-process
// back-end of that name with the completion driver over it.
func openProactor(ctx context.Context, spec string) (sdk.Driver, error) {
	if open, name, ok := placementOf(spec); ok {
		return open(ctx, name)
	}
	p, err := sdk.Proactors.New(spec)
	if err != nil {
		return nil, err
	}
	d, err := completion.New(p)
	if err != nil {
		p.Close()
		return nil, err
	}
	return d, nil
}
