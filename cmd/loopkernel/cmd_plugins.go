package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"

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
	summary: "list the selector back-ends: compiled in, and plugin executables in the plugin directory",
	help: `
Bundled back-ends are compiled into this binary: NAME runs one in this process,
plugin:NAME in a plugin process (this binary re-executed). Third-party plugins
are executables named loopkernel-plugin-NAME in the plugin directory
(--plugin-dir, default $` + plugin.PluginDirEnv + `); select one with
plugin:NAME or plugin:PATH.

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
	caps sdk.Capabilities
	took time.Duration
	err  error
}

func (p probe) String() string {
	if p.err != nil {
		return "failed: " + p.err.Error()
	}
	return fmt.Sprintf("%s (started in %s)", capsString(p.caps), fmtDuration(p.took))
}

func runPlugins(e *env, args []string) error {
	o := pluginsOpts
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "loopkernel", Output: e.stderr, Level: hclog.Warn})
	opts := plugin.Options{PluginDir: o.pluginDir, Template: plugin.Spec{Logger: logger, StartTimeout: o.startTimeout}}
	start := func(spec string) probe {
		if o.noStart {
			return probe{err: errNotStarted}
		}
		ctx, cancel := context.WithTimeout(context.Background(), o.startTimeout)
		defer cancel()
		t0 := time.Now()
		sel, err := plugin.Open(ctx, sdk.Selectors, spec, opts)
		if err != nil {
			return probe{err: err}
		}
		p := probe{caps: sel.Capabilities(), took: time.Since(t0)}
		if err := sel.Close(); err != nil {
			p.err = fmt.Errorf("close: %w", err)
		}
		return p
	}
	failed := 0
	show := func(p probe) string {
		if errors.Is(p.err, errNotStarted) {
			return "not started"
		}
		if p.err != nil {
			failed++
		}
		return p.String()
	}

	fmt.Fprintln(e.stdout, "Bundled back-ends (compiled into this binary):")
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  SELECTOR\tPLACEMENT\tCAPABILITIES")
	for _, name := range sdk.Selectors.Names() {
		fmt.Fprintf(tw, "  %s\tin-process\t%s\n", name, show(start(name)))
		fmt.Fprintf(tw, "  plugin:%s\tout-of-process (this binary re-executed)\t%s\n", name, show(start("plugin:"+name)))
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
	} else if err := listThirdParty(e.stdout, dir, func(path string) string { return show(start("plugin:" + path)) }); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d back-end(s) failed to start", failed)
	}
	return nil
}

var errNotStarted = errors.New("not started")

// listThirdParty lists the plugin executables in dir with what describe
// says of each.
func listThirdParty(w io.Writer, dir string, describe func(path string) string) error {
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
		fmt.Fprintf(tw, "  plugin:%s\t%s\t%s\n", s.Name, s.Path, describe(s.Path))
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
