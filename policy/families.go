package policy

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

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
)

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
	fallback := f.PluginFallback
	if v := os.Getenv(PluginFallbackEnv); v != "" && !fallback {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("$%s=%q: want a boolean (1, true, 0, false)", PluginFallbackEnv, v)
		}
		fallback = on
	}
	if fallback && !p.PluginFallback {
		p.PluginFallback = true
		overridden = append(overridden, "plugin-fallback")
	}
	if len(overridden) > 0 {
		p.Description += " [" + strings.Join(overridden, ", ") + "]"
	}
	return p, nil
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
