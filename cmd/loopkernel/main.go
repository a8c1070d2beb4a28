// Command loopkernel is loopkernel's front door: it lists the event-loop
// policies compiled in, runs the asyncio spec's example programs on any of
// them, and hosts the project's other tools as subcommands.
//
//	loopkernel policies
//	loopkernel example hello --policy poll
//	LOOPKERNEL_POLICY=poll loopkernel example watch-fd
//
// Every subcommand is one file, cmd_NAME.go, defining one command value that
// is listed in the commands table below; the --policy flag is added to every
// subcommand by main, so a subcommand asks env.policy() for its loop recipe
// and never parses the flag or the environment itself.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/loopkernel/loopkernel/policy"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// command is one subcommand.
type command struct {
	name     string
	synopsis string // arguments after the name, for the usage line
	summary  string // one line for the command list
	help     string // paragraphs shown by `loopkernel help NAME`, may be empty
	// flags adds the subcommand's own flags; nil if it has none.
	flags func(fs *flag.FlagSet)
	// run does the work. A returned usageError prints the usage and exits 2;
	// any other error exits 1.
	run func(e *env, args []string) error
}

// commands is the command table, in the order `loopkernel help` lists them.
var commands = []*command{
	policiesCmd,    // cmd_policies.go
	exampleCmd,     // cmd_example.go
	conformanceCmd, // cmd_conformance.go
	pluginsCmd,     // cmd_plugins.go
	serveCmd,       // cmd_serve.go
	benchCmd,       // cmd_bench.go
	certsCmd,       // cmd_certs.go
	// A new tool joins here: one file, cmd_NAME.go, defining NAMECmd, and
	// one line in this table.
}

// env is what a subcommand gets besides its arguments.
type env struct {
	stdout, stderr io.Writer
	// flags are --policy and the per-family --selector, --resolver,
	// --executor and --proactor as given; empty ones fall back to their environment
	// variables, then to the policy's choice (see policy.Choose).
	flags policy.Flags
}

// policy resolves the flags, the environment and the defaults into a policy
// and puts it in force, so policy.GetEventLoop and policy.NewEventLoop build
// loops from it.
func (e *env) policy() (*policy.Policy, error) {
	p, err := policy.Choose(e.flags)
	if err != nil {
		return nil, err
	}
	policy.SetEventLoopPolicy(p)
	return p, nil
}

// usageError marks a mistake in how the command was invoked.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func main() {
	// First, before anything else: when a plugin policy (epoll-plugin,
	// poll-plugin) re-executes this binary as its selector plugin, serve
	// that back-end and exit instead of running the command.
	plugin.ServeBundled()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can call it in-process.
func run(args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	global := flag.NewFlagSet("loopkernel", flag.ContinueOnError)
	global.SetOutput(stderr)
	addCommonFlags(global, e)
	global.Usage = func() { printUsage(stderr) }
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := global.Args()
	if len(rest) == 0 {
		printUsage(stderr)
		return 2
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		return runHelp(rest, stdout, stderr)
	}
	cmd := lookupCommand(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "loopkernel: unknown command %q\n\n", name)
		printUsage(stderr)
		return 2
	}
	fs := flag.NewFlagSet("loopkernel "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addCommonFlags(fs, e)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	fs.Usage = func() { printCommandUsage(stderr, cmd, fs) }
	positional, err := parseInterspersed(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := cmd.run(e, positional); err != nil {
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintf(stderr, "loopkernel %s: %s\n\n", cmd.name, u.msg)
			printCommandUsage(stderr, cmd, fs)
			return 2
		}
		fmt.Fprintf(stderr, "loopkernel %s: %v\n", cmd.name, err)
		return 1
	}
	return 0
}

// addCommonFlags defines the flags every subcommand accepts. A value given
// before the subcommand name is the default for the one given after it.
func addCommonFlags(fs *flag.FlagSet, e *env) {
	fs.StringVar(&e.flags.Policy, "policy", e.flags.Policy,
		"event-loop policy `NAME` (see `loopkernel policies`); default $"+policy.EnvVar+", else "+policy.Default)
	fs.StringVar(&e.flags.Selector, "selector", e.flags.Selector,
		"selector `SPEC` (NAME, plugin:NAME, plugin:PATH) overriding the policy's; default $"+policy.SelectorEnv)
	fs.StringVar(&e.flags.Resolver, "resolver", e.flags.Resolver,
		"resolver `SPEC` overriding the policy's; default $"+policy.ResolverEnv)
	fs.StringVar(&e.flags.Executor, "executor", e.flags.Executor,
		"function-executor `SPEC` overriding the policy's; default $"+policy.ExecutorEnv)
	fs.StringVar(&e.flags.Proactor, "proactor", e.flags.Proactor,
		"completion back-end `SPEC` (uring, uring-plugin or plugin:NAME, none for the policy's selector) overriding the policy's; default $"+policy.ProactorEnv)
	fs.BoolVar(&e.flags.ProactorFallback, "proactor-fallback", e.flags.ProactorFallback,
		"where io_uring is refused (seccomp, kernel.io_uring_disabled), run on the policy's selector with one warning instead of failing; default $"+policy.ProactorFallbackEnv)
	fs.BoolVar(&e.flags.PluginFallback, "plugin-fallback", e.flags.PluginFallback,
		"a plugin that cannot be kept alive falls back to its in-process twin instead of failing; default $"+policy.PluginFallbackEnv)
}

// parseInterspersed parses flags anywhere among the arguments, as
// `loopkernel example hello --policy poll` needs; the standard flag package
// stops at the first non-flag. "--" ends flag parsing.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		// Parse stops at the first non-flag or right after a "--", which it
		// consumes; everything after a "--" is positional.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(positional, rest...), nil
		}
		if len(rest) == 0 {
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	return positional, nil
}

func lookupCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func runHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stdout)
		return 0
	}
	cmd := lookupCommand(args[0])
	if cmd == nil {
		fmt.Fprintf(stderr, "loopkernel help: unknown command %q\n", args[0])
		return 2
	}
	fs := flag.NewFlagSet("loopkernel "+cmd.name, flag.ContinueOnError)
	addCommonFlags(fs, &env{})
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	printCommandUsage(stdout, cmd, fs)
	return 0
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `loopkernel runs Python asyncio's event loop, rebuilt in Go, on a choice of
back-ends (event-loop policies).

Usage:
  loopkernel [--policy NAME] [--selector|--resolver|--executor|--proactor SPEC] COMMAND [arguments]

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	fmt.Fprintf(tw, "  help\t%s\n", "show help for a command")
	tw.Flush()
	fmt.Fprintf(w, `
Flags accepted by every command:
  --policy NAME     event-loop policy (default $%s, else %q)
  --selector SPEC   the selector back-end, overriding the policy's ($%s)
  --resolver SPEC   the resolver back-end, overriding the policy's ($%s)
  --executor SPEC   the function-executor back-end, overriding the policy's ($%s)
  --proactor SPEC   the completion back-end (io_uring: uring, uring-plugin), or
                    none for the policy's selector ($%s)
  --proactor-fallback  where io_uring is refused, use the policy's selector
                    and warn once, instead of failing ($%s)
  A SPEC is NAME (compiled in, in this process), plugin:NAME (in a plugin
  process) or plugin:PATH (a plugin executable).

Run "loopkernel help COMMAND" for a command's arguments and flags.
`, policy.EnvVar, policy.Default, policy.SelectorEnv, policy.ResolverEnv, policy.ExecutorEnv, policy.ProactorEnv, policy.ProactorFallbackEnv)
}

func printCommandUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: loopkernel %s", cmd.name)
	if cmd.synopsis != "" {
		fmt.Fprintf(w, " %s", cmd.synopsis)
	}
	fmt.Fprintf(w, "\n\n%s\n", cmd.summary)
	if cmd.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.help))
	}
	fmt.Fprintln(w, "\nFlags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
}
