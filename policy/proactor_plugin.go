package policy

import (
	"context"
	"fmt"

	"github.com/loopkernel/loopkernel/driver/completion"
	"github.com/loopkernel/loopkernel/plugins/proactor"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
	"github.com/loopkernel/loopkernel/sdk/proactorplane"
)

// The out-of-process proactor placement: a proactor spec plugin:NAME (or
// NAME-plugin) runs the bundled proactor NAME in a supervised plugin
// process (this binary re-executed), plugin:PATH a plugin executable, and
// the loop's completion driver sits on the host side of the
// shared-memory plane (sdk/plugin.RemoteProactor).
func init() {
	RegisterProactorPlacement(pluginPrefix, openProactorPlugin)
	Register(Policy{
		Name:        "uring-plugin",
		Description: "io_uring proactor in a supervised plugin process (this binary re-executed; operations on shared-memory rings, sockets passed once)",
		Selector:    "epoll",
		Proactor:    pluginPrefix + "uring",
	})
}

// openProactorPlugin launches the proactor plugin name (a bundled name or
// a path) and returns the completion driver over it, wrapped so that
// closing a descriptor drops the plugin's copy and an operation the
// plugin's death ended reports which plugin died and how.
//
// Where io_uring is refused here it is refused in the plugin too (a
// seccomp filter and the sysctl are inherited), so a bundled io_uring
// proactor is checked in the host first: the error wraps
// proactor.ErrRefused, which --proactor-fallback acts on, instead of a
// plugin that failed to start.
func openProactorPlugin(ctx context.Context, name string) (sdk.Driver, error) {
	if _, bundled := sdk.Proactors.Lookup(name); bundled && name == "uring" {
		if err := proactor.Available(); err != nil {
			return nil, err
		}
	}
	pr, err := plugin.Open(ctx, sdk.Proactors, pluginPrefix+name, plugin.Options{Template: plugin.Spec{Logger: pluginLogger()}})
	if err != nil {
		return nil, err
	}
	rp, ok := pr.(*plugin.RemoteProactor)
	if !ok {
		pr.Close()
		return nil, fmt.Errorf("proactor %s%s: not an out-of-process proactor", pluginPrefix, name)
	}
	d, err := completion.New(rp)
	if err != nil {
		rp.Close()
		return nil, err
	}
	return proactorplane.WrapDriver(d, pluginPrefix+name, rp.Forget, rp.DiedError), nil
}

// ProactorDriver opens the I/O driver that a proactor spec names, as a
// loop of a policy with that Proactor gets it: NAME in process, plugin:NAME
// or plugin:PATH out of process (or any registered placement's prefix).
// ctx bounds a plugin's start. The caller owns the driver (kernel.NewOnDriver
// takes it, or a conformance suite's Driver factory returns it).
func ProactorDriver(ctx context.Context, spec string) (sdk.Driver, error) {
	resolved, err := proactorSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("proactor %q: %w", spec, err)
	}
	if resolved == "" {
		return nil, fmt.Errorf("proactor %q: %w: names no proactor", spec, sdk.ErrUnknownBackend)
	}
	d, err := openProactor(ctx, resolved)
	if err != nil {
		return nil, fmt.Errorf("proactor %q: %w", spec, err)
	}
	return d, nil
}
