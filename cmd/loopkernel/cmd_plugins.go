package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/loopkernel/loopkernel/plugins/proactor"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// `loopkernel plugins` answers "what can I point --selector at?": the
// back-ends compiled in (each usable in-process and, by re-executing this
// binary, out of process) and the third-party plugin executables in the
// plugin directory. Capabilities come from the back-end itself, which for a
// plugin means starting it for a moment: the executable is the only thing
// that knows what it serves.

var pluginsOpts struct {
	pluginDir    string
	noStart      bool
	startTimeout time.Duration
}

var pluginsCmd = &command{
	name:    "plugins",
	summary: "list the back-ends of every family compiled in, and plugin executables in the plugin directory",
	help: `
Bundled back-ends of every family (selector, resolver, executor, proactor) are compiled
into this binary: NAME runs one in this process, plugin:NAME in a plugin
process (this binary re-executed). Third-party plugins are executables named
loopkernel-plugin-NAME in the plugin directory (--plugin-dir, default
$` + plugin.PluginDirEnv + `), listed as selectors; select one with
plugin:NAME or plugin:PATH (--selector, --resolver, --executor or --policy).

Every back-end is started once, briefly, to ask for its capabilities and to
show that it starts; --no-start lists without starting anything. The exit
status is 1 if a back-end failed to start.`,
	flags: func(fs *flag.FlagSet) {
		fs.StringVar(&pluginsOpts.pluginDir, "plugin-dir", "", "plugin `DIR` to list (default $"+plugin.PluginDirEnv+")")
		fs.BoolVar(&pluginsOpts.noStart, "no-start", false, "do not start back-ends to ask for their capabilities")
		fs.DurationVar(&pluginsOpts.startTimeout, "start-timeout", 10*time.Second, "how long one plugin may take to start")
	},
	run: runPlugins,
}

// probe is what starting a back-end for a moment found out.
type probe struct {
	what string // what the started back-end said of itself
	took time.Duration
	err  error
}

func (p probe) String() string {
	if p.err != nil {
		return "failed: " + p.err.Error()
	}
	return fmt.Sprintf("%s (started in %s)", p.what, fmtDuration(p.took))
}

// probeBackend opens the back-end spec names, asks check what it serves
// (one real call through whichever placement answers), and closes it.
func probeBackend[T any](timeout time.Duration, reg *sdk.Registry[T], spec string, opts plugin.Options,
	check func(context.Context, T) (string, error)) probe {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t0 := time.Now()
	b, err := plugin.Open(ctx, reg, spec, opts)
	if err != nil {
		return probe{err: err}
	}
	p := probe{took: time.Since(t0)}
	p.what, p.err = check(ctx, b)
	if c, ok := any(b).(io.Closer); ok {
		if err := c.Close(); err != nil && p.err == nil {
			p.err = fmt.Errorf("close: %w", err)
		}
	}
	return p
}

// checkResolver asks a resolver a question that needs no network.
func checkResolver(ctx context.Context, r sdk.Resolver) (string, error) {
	ni, err := r.Getnameinfo(ctx, netip.MustParseAddrPort("127.0.0.1:80"), sdk.NINumericHost|sdk.NINumericServ)
	if err != nil {
		return "", fmt.Errorf("getnameinfo: %w", err)
	}
	return fmt.Sprintf("answers getnameinfo (127.0.0.1:80 -> %s %s)", ni.Host, ni.Service), nil
}

// checkExecutor makes a call round trip that needs no registered function:
// the executor must answer it with sdk.ErrUnknownFunc.
func checkExecutor(ctx context.Context, ex sdk.Executor) (string, error) {
	_, err := ex.Call(ctx, "loopkernel.plugins.probe-unregistered", nil)
	if !errors.Is(err, sdk.ErrUnknownFunc) {
		return "", fmt.Errorf("a call of an unregistered function answered %v, not %v", err, sdk.ErrUnknownFunc)
	}
	return fmt.Sprintf("runs registered functions (%d registered)", len(sdk.FuncNames())), nil
}

// checkProactor completes one no-op operation: a round trip through the
// ring, and for a plugin through the shared-memory plane.
func checkProactor(_ context.Context, pr sdk.Proactor) (string, error) {
	if err := pr.Submit([]sdk.Submission{{Op: sdk.OpNop, UserData: 1}}); err != nil {
		return "", fmt.Errorf("submit a no-op: %w", err)
	}
	var done [4]sdk.Completion
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, err := pr.Complete(done[:], 100*time.Millisecond)
		if err != nil {
			return "", fmt.Errorf("complete a no-op: %w", err)
		}
		for _, c := range done[:n] {
			if c.UserData == 1 {
				caps := pr.Capabilities()
				return fmt.Sprintf("serves %q, completes a no-op (%d operations)", caps.Name, len(caps.Ops)), nil
			}
		}
	}
	return "", errors.New("a no-op did not complete within 5s")
}

func runPlugins(e *env, args []string) error {
	o := pluginsOpts
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "loopkernel", Output: e.stderr, Level: hclog.Warn})
	opts := plugin.Options{PluginDir: o.pluginDir, Template: plugin.Spec{Logger: logger, StartTimeout: o.startTimeout}}
	// start opens a selector by spec for a moment and reports what it
	// serves; third-party plugins are listed as selectors.
	start := func(spec string) probe {
		if o.noStart {
			return probe{err: errNotStarted}
		}
		return probeBackend(o.startTimeout, sdk.Selectors, spec, opts, func(_ context.Context, s sdk.Selector) (string, error) {
			return capsString(s.Capabilities()), nil
		})
	}
	failed := 0
	show := func(p probe) string {
		if errors.Is(p.err, errNotStarted) {
			if p.what != "" {
				return "not started: " + p.what
			}
			return "not started"
		}
		if p.err != nil {
			failed++
		}
		return p.String()
	}

	fmt.Fprintln(e.stdout, "Bundled back-ends (compiled into this binary), each family in both placements:")
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  FAMILY\tSPEC\tPLACEMENT\tCAPABILITIES")
	row := func(family, name string, probeOf func(spec string) probe) {
		fmt.Fprintf(tw, "  %s\t%s\tin-process\t%s\n", family, name, show(probeOf(name)))
		fmt.Fprintf(tw, "  %s\tplugin:%s\tout-of-process (this binary re-executed)\t%s\n", family, name, show(probeOf("plugin:"+name)))
	}
	for _, name := range sdk.Selectors.Names() {
		row(sdk.Selectors.Family(), name, start)
	}
	for _, name := range sdk.Resolvers.Names() {
		row(sdk.Resolvers.Family(), name, func(spec string) probe {
			if o.noStart {
				return probe{err: errNotStarted}
			}
			return probeBackend(o.startTimeout, sdk.Resolvers, spec, opts, checkResolver)
		})
	}
	for _, name := range sdk.Executors.Names() {
		row(sdk.Executors.Family(), name, func(spec string) probe {
			if o.noStart {
				return probe{err: errNotStarted}
			}
			return probeBackend(o.startTimeout, sdk.Executors, spec, opts, checkExecutor)
		})
	}
	refused := proactor.Available()
	for _, name := range sdk.Proactors.Names() {
		row(sdk.Proactors.Family(), name, func(spec string) probe {
			switch {
			case o.noStart:
				return probe{err: errNotStarted}
			case errors.Is(refused, proactor.ErrRefused):
				// Not a failure of the back-end: this machine refuses
				// io_uring (a plugin inherits the refusal).
				return probe{err: errNotStarted, what: refused.Error()}
			}
			return probeBackend(o.startTimeout, sdk.Proactors, spec, opts, checkProactor)
		})
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	dir := o.pluginDir
	if dir == "" {
		dir = os.Getenv(plugin.PluginDirEnv)
	}
	fmt.Fprintln(e.stdout)
	if dir == "" {
		fmt.Fprintf(e.stdout, "Third-party plugins: no plugin directory (set --plugin-dir or $%s)\n", plugin.PluginDirEnv)
	} else if err := listThirdParty(e.stdout, dir, func(s plugin.Spec) string {
		if o.noStart {
			return show(probe{err: errNotStarted})
		}
		// Started under the name its file gives it, as --selector plugin:NAME
		// would start it: a plugin whose Serve name differs from its file
		// name is refused here as it would be there, not listed as healthy.
		return show(probeSpec(o.startTimeout, s, opts.Template))
	}); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d back-end(s) failed to start", failed)
	}
	return nil
}

var errNotStarted = errors.New("not started")

// probeSpec starts the third-party selector plugin s (Name from its file
// name, Path) for a moment and reports what it serves.
func probeSpec(timeout time.Duration, s plugin.Spec, template plugin.Spec) probe {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	spec := template
	spec.Name, spec.Path = s.Name, s.Path
	t0 := time.Now()
	sel, err := plugin.Launch(ctx, sdk.Selectors, spec)
	if err != nil {
		return probe{err: err}
	}
	p := probe{took: time.Since(t0), what: capsString(sel.Capabilities())}
	if err := sel.Close(); err != nil {
		p.err = fmt.Errorf("close: %w", err)
	}
	return p
}

// listThirdParty lists the plugin executables in dir with what describe
// says of each.
func listThirdParty(w io.Writer, dir string, describe func(plugin.Spec) string) error {
	found, err := plugin.Discover(dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Third-party plugins in %s:\n", dir)
	if len(found) == 0 {
		fmt.Fprintln(w, "  none (a plugin is an executable named loopkernel-plugin-NAME)")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  SELECTOR\tPATH\tCAPABILITIES")
	for _, s := range found {
		fmt.Fprintf(tw, "  plugin:%s\t%s\t%s\n", s.Name, s.Path, describe(s))
	}
	return tw.Flush()
}

// capsString renders capabilities the way the listing shows them.
func capsString(c sdk.Capabilities) string {
	fds := "unlimited"
	if c.MaxFDs > 0 {
		fds = fmt.Sprint(c.MaxFDs)
	}
	files := "no"
	if c.RegularFiles {
		files = "yes"
	}
	return fmt.Sprintf("serves %q, max-fds %s, regular-files %s", c.Name, fds, files)
}
