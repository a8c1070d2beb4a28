package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/loopkernel/loopkernel/policy"
	"github.com/loopkernel/loopkernel/sdk"
)

var policiesCmd = &command{
	name:    "policies",
	summary: "list the event-loop policies compiled into this binary",
	help: `
Each policy is a recipe for building an event loop: which back-end of each
family it uses (the selector it polls through, the resolver of getaddrinfo and
getnameinfo, the executor of registered functions) and where each runs (in
this process, or in a plugin process). Pick one with --policy NAME or
LOOPKERNEL_POLICY=NAME; an unregistered plugin:NAME or plugin:PATH selects a
selector plugin ad hoc. --selector, --resolver and --executor (or
LOOPKERNEL_SELECTOR, _RESOLVER, _EXECUTOR) override one family's choice.

A policy with a proactor (uring) runs its loops on a completion back-end
instead of a selector: its SELECTOR column says proactor:NAME. --proactor
SPEC (or LOOPKERNEL_PROACTOR) puts one on any policy (uring in process,
uring-plugin or plugin:NAME out of process) or takes it off (none).`,
	run: runPolicies,
}

func runPolicies(e *env, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSELECTOR\tRESOLVER\tEXECUTOR\tDESCRIPTION")
	for _, name := range policy.Names() {
		p, err := policy.Lookup(name)
		if err != nil {
			return err // only if a name vanished between Names and Lookup
		}
		if name == policy.Default {
			name += " (default)"
		}
		sel, res, ex := p.Backends()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, sel, res, ex, p.Description)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "\nBack-ends compiled in, by family (each NAME also runs out of process as plugin:NAME):")
	for _, f := range []struct {
		family string
		names  []string
	}{
		{sdk.Selectors.Family(), sdk.Selectors.Names()},
		{sdk.Resolvers.Family(), sdk.Resolvers.Names()},
		{sdk.Executors.Family(), sdk.Executors.Names()},
		{sdk.Proactors.Family(), sdk.Proactors.Names()},
	} {
		fmt.Fprintf(e.stdout, "  %-9s %s\n", f.family, strings.Join(f.names, ", "))
	}
	// Say which one a loop-running command would use here, so a stale or
	// mistyped LOOPKERNEL_POLICY (or family variable) shows up, and fails,
	// right away.
	chosen, err := policy.Choose(e.flags)
	if err != nil {
		return err
	}
	sel, res, ex := chosen.Backends()
	io := "selector " + sel
	if chosen.Proactor != "" {
		io = "proactor " + chosen.Proactor
	}
	fmt.Fprintf(e.stdout, "\nselected: %s (%s, resolver %s, executor %s)\n", chosen.Name, io, res, ex)
	return nil
}
