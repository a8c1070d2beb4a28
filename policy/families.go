package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/loopkernel/loopkernel/plugins/proactor"
	"github.com/loopkernel/loopkernel/sdk"
)

// Environment variables that choose one family's back-end, overriding the
// policy's choice (a flag of the same name overrides them in turn).
const (
	SelectorEnv = "LOOPKERNEL_SELECTOR"
	ResolverEnv = "LOOPKERNEL_RESOLVER"
	ExecutorEnv = "LOOPKERNEL_EXECUTOR"
	// PluginFallbackEnv turns Policy.PluginFallback on when set to a true
	// value (1, true, ...; strconv.ParseBool), as --plugin-fallback does.
	PluginFallbackEnv = "LOOPKERNEL_PLUGIN_FALLBACK"
	// ProactorEnv names the completion back-end (Policy.Proactor) when
	// --proactor does not: a name in sdk.Proactors ("uring"), NAME-plugin
	// or plugin:NAME for an out-of-process placement, or "none" for the
	// policy's selector.
	ProactorEnv = "LOOPKERNEL_PROACTOR"
	// ProactorFallbackEnv turns Policy.ProactorFallback on when set to a
	// true value, as --proactor-fallback does.
	ProactorFallbackEnv = "LOOPKERNEL_PROACTOR_FALLBACK"
)

// ProactorNone is the proactor spec that turns a policy's proactor off:
// its loops run on its selector again.
const ProactorNone = "none"

// Flags is what a command line says about the loop to build: a policy, and
// per back-end family a spec (NAME, plugin:NAME or plugin:PATH) that
// overrides the policy's. An empty field falls back to its environment
// variable (EnvVar, SelectorEnv, ResolverEnv, ExecutorEnv), then to the
// policy's choice.
type Flags struct {
	Policy   string
	Selector string
	Resolver string
	Executor string
	// PluginFallback turns Policy.PluginFallback on; false leaves it to
	// PluginFallbackEnv, then to the policy.
	PluginFallback bool
	// Proactor overrides Policy.Proactor (see ProactorEnv for the forms);
	// empty leaves it to ProactorEnv, then to the policy.
	Proactor string
	// ProactorFallback turns Policy.ProactorFallback on; false leaves it
	// to ProactorFallbackEnv, then to the policy.
	ProactorFallback bool
}

// Choose builds the policy that f and the environment name: Select's policy
// with each family's override applied. An in-process back-end name that is
// not registered fails here, listing the known names, rather than when the
// first loop is built.
func Choose(f Flags) (*Policy, error) {
	p, err := Select(f.Policy)
	if err != nil {
		return nil, err
	}
	var overridden []string
	for _, o := range []struct {
		flag, env string
		family    string
		names     func() []string
		dst       *string
	}{
		{f.Selector, SelectorEnv, sdk.Selectors.Family(), sdk.Selectors.Names, &p.Selector},
		{f.Resolver, ResolverEnv, sdk.Resolvers.Family(), sdk.Resolvers.Names, &p.Resolver},
		{f.Executor, ExecutorEnv, sdk.Executors.Family(), sdk.Executors.Names, &p.Executor},
	} {
		spec, from := o.flag, "--"+o.family
		if spec == "" {
			spec, from = os.Getenv(o.env), "$"+o.env
		}
		if spec == "" {
			continue
		}
		if name, ok := strings.CutSuffix(spec, "-plugin"); ok && !slices.Contains(o.names(), spec) && slices.Contains(o.names(), name) {
			// NAME-plugin, as the built-in policies name a plugin placement
			// (epoll-plugin): the same as plugin:NAME.
			spec = pluginPrefix + name
		}
		if !strings.HasPrefix(spec, pluginPrefix) && !slices.Contains(o.names(), spec) {
			return nil, fmt.Errorf("%s %q: %w (have %v, or %sNAME, %sPATH)", from, spec, sdk.ErrUnknownBackend,
				o.names(), pluginPrefix, pluginPrefix)
		}
		*o.dst = spec
		overridden = append(overridden, o.family+"="+spec)
	}
	if spec, from := f.Proactor, "--proactor"; spec != "" || os.Getenv(ProactorEnv) != "" {
		if spec == "" {
			spec, from = os.Getenv(ProactorEnv), "$"+ProactorEnv
		}
		resolved, err := proactorSpec(spec)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", from, spec, err)
		}
		p.Proactor = resolved
		overridden = append(overridden, "proactor="+spec)
	}
	for _, b := range []struct {
		flag bool
		env  string
		dst  *bool
		name string
	}{
		{f.PluginFallback, PluginFallbackEnv, &p.PluginFallback, "plugin-fallback"},
		{f.ProactorFallback, ProactorFallbackEnv, &p.ProactorFallback, "proactor-fallback"},
	} {
		on := b.flag
		if v := os.Getenv(b.env); v != "" && !on {
			var err error
			if on, err = strconv.ParseBool(v); err != nil {
				return nil, fmt.Errorf("$%s=%q: want a boolean (1, true, 0, false)", b.env, v)
			}
		}
		if on && !*b.dst {
			*b.dst = true
			overridden = append(overridden, b.name)
		}
	}
	if len(overridden) > 0 {
		p.Description += " [" + strings.Join(overridden, ", ") + "]"
	}
	return p, nil
}

// proactorSpec resolves what --proactor or ProactorEnv says into
// Policy.Proactor: "none" turns the proactor off (""); a name in
// sdk.Proactors stays as it is; NAME-plugin becomes plugin:NAME, as
// epoll-plugin names plugin:epoll; a spec with a registered placement's
// prefix, or plugin:, passes through for that placement to open (an
// out-of-process placement missing from this binary fails when the loop is
// built, naming the spec). Anything else is unknown and the error lists
// what is known.
func proactorSpec(spec string) (string, error) {
	names := sdk.Proactors.Names()
	if spec == ProactorNone {
		return "", nil
	}
	if slices.Contains(names, spec) {
		return spec, nil
	}
	if name, ok := strings.CutSuffix(spec, "-plugin"); ok && slices.Contains(names, name) {
		return pluginPrefix + name, nil
	}
	if rest, ok := strings.CutPrefix(spec, pluginPrefix); ok && rest != "" {
		return spec, nil
	}
	if _, rest, ok := placementOf(spec); ok && rest != "" {
		return spec, nil
	}
	return "", fmt.Errorf("%w: no proactor of that name (have %v, %s to use the policy's selector, NAME-plugin or %sNAME out of process)",
		sdk.ErrUnknownBackend, names, ProactorNone, pluginPrefix)
}

// Backends names the back-end each family of p's loops gets, with the
// defaults filled in: what `loopkernel policies` shows.
func (p *Policy) Backends() (selector, resolver, executor string) {
	resolver, executor = p.Resolver, p.Executor
	if resolver == "" {
		resolver = sdk.DefaultResolver
	}
	if executor == "" {
		executor = sdk.DefaultExecutor
	}
	if p.Proactor != "" {
		return "proactor:" + p.Proactor, resolver, executor
	}
	return p.Selector, resolver, executor
}

// proactorDriver opens p's proactor (p.Proactor is set). Where it is
// refused (an error wrapping proactor.ErrRefused) it fails saying why,
// naming the epoll policy and the switch that falls back; with
// p.ProactorFallback it returns no driver and no error instead, so the
// caller builds the loop on p.Selector, and the first such fallback of
// each proactor spec in the process logs one warning.
func (p *Policy) proactorDriver(ctx context.Context) (sdk.Driver, error) {
	if rest, ok := strings.CutPrefix(p.Proactor, pluginPrefix); ok && !placed(p.Proactor) {
		return nil, fmt.Errorf("proactor %q: %w: this binary has no out-of-process proactor placement for %s (in process: %v)",
			p.Proactor, sdk.ErrUnknownBackend, rest, sdk.Proactors.Names())
	}
	d, err := openProactor(ctx, p.Proactor)
	switch {
	case err == nil:
		return d, nil
	case !errors.Is(err, proactor.ErrRefused):
		return nil, fmt.Errorf("proactor %q: %w", p.Proactor, err)
	case !p.ProactorFallback:
		return nil, fmt.Errorf("proactor %q: %w (or let it fall back to the policy's selector %q: --proactor-fallback, $%s=1)",
			p.Proactor, err, p.Selector, ProactorFallbackEnv)
	}
	if _, warned := fellBack.LoadOrStore(p.Proactor, true); !warned {
		proactorLogger().Warn("proactor refused; loops fall back to the policy's selector",
			"policy", p.Name, "proactor", p.Proactor, "selector", p.Selector, "error", err)
	}
	return nil, nil
}

// fellBack holds the proactor specs whose fallback was logged: a program
// that builds many loops hears it once.
var fellBack sync.Map // string -> bool

// proactorLogger is where the fallback's warning goes: the plugin
// supervisor's stderr logger; tests swap it to count warnings.
var proactorLogger = func() hclog.Logger { return pluginLogger() }

// placed reports whether spec has a registered placement's prefix.
func placed(spec string) bool {
	_, _, ok := placementOf(spec)
	return ok
}
