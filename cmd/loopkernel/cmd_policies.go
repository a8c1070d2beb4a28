package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/loopkernel/loopkernel/policy"
)

var policiesCmd = &command{
	name:    "policies",
	summary: "list the event-loop policies compiled into this binary",
	help: `
Each policy is a recipe for building an event loop: which selector back-end it
polls through, and where that back-end runs (in this process, or in a plugin
process). Pick one with --policy NAME or LOOPKERNEL_POLICY=NAME; an
unregistered plugin:NAME or plugin:PATH selects a selector plugin ad hoc.`,
	run: runPolicies,
}

func runPolicies(e *env, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSELECTOR\tDESCRIPTION")
	for _, name := range policy.Names() {
		p, err := policy.Lookup(name)
		if err != nil {
			return err // only if a name vanished between Names and Lookup
		}
		if name == policy.Default {
			name += " (default)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, p.Selector, p.Description)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Say which one a loop-running command would use here, so a stale or
	// mistyped LOOPKERNEL_POLICY shows up (and fails) right away.
	sel, err := policy.Select(e.policyFlag)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\nselected: %s\n", sel.Name)
	return nil
}
