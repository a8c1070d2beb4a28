package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// `loopkernel conformance` is the certifier as a binary, the way csi-sanity
// is one: point it at any selector, in-process or out-of-process, bundled or
// third-party, and it runs the same cases `go test` runs, prints each result
// as it lands, and writes the reports a CI system reads.

var conformanceOpts struct {
	suite     string
	timeout   time.Duration
	run       string
	junit     string
	json      string
	debug     bool
	pluginDir string
	sha256    string
	list      bool
	keepGoing bool
}

var conformanceCmd = &command{
	name:     "conformance",
	synopsis: "[--selector NAME|plugin:NAME|plugin:PATH] [--suite selector|kernel|net|all]",
	summary:  "certify a selector back-end against the selector, kernel and networking contracts",
	help: `
Runs the contract suites against the selector named by --selector (default:
the selector of the --policy in force):

  NAME          a back-end compiled into this binary, in this process
  plugin:NAME   that back-end in a supervised plugin process (this binary
                re-executed), or the executable loopkernel-plugin-NAME in the
                plugin directory
  plugin:PATH   the plugin executable at PATH

The selector suite checks the Selector seam itself, including how late a
Wait may be against the in-process epoll selector measured in the same run;
the kernel suite runs event loops on the selector and checks what asyncio
programs rely on; the net suite drives the loop's transports, servers,
datagram endpoints, sock_* operations and sendfile over loopback on it.
Every Wait of every case is held to the contract (events of live, ready
registrations only; a Wait ends once its timeout passed or a Wake came).
--list prints the cases without running anything.

Each case prints one line when it ends: its status, how long it took, and
for a skip what it needs that this run lacks (a capability of the selector,
or debug mode), for a failure the rule it broke. A case that does not end
within --timeout, or is found stuck in a Wait nothing ends, is reported as a
hang and abandoned. A plugin that needs its supervisor (a restart after a
crash, a kill for not answering, a data-plane protocol violation) fails the
case it happened in; the counts are in the summary and the reports.

The run fails fast: when the selector suite fails, the kernel and net suites
(built on it) are reported blocked instead of run, and after a hang every
later case is blocked; --keep-going runs them anyway.

The exit status is 0 when nothing failed, hung or was blocked, 1 otherwise.
--junit and --json write the results (with each case's log and incidents)
for CI and later comparison; they are written even when cases fail.`,
	flags: func(fs *flag.FlagSet) {
		o := &conformanceOpts
		fs.StringVar(&o.suite, "suite", "all", "which contract: selector, kernel, net or all")
		fs.DurationVar(&o.timeout, "timeout", conformance.DefaultTimeout, "per-case limit; a case past it is reported as a hang")
		fs.StringVar(&o.run, "run", "", "run only the cases whose name matches `REGEXP`")
		fs.StringVar(&o.junit, "junit", "", "write JUnit XML results to `FILE`")
		fs.StringVar(&o.json, "json", "", "write JSON results to `FILE`")
		fs.BoolVar(&o.debug, "debug", false, "run the kernel and net suites' loops in debug mode (asyncio's loop.set_debug(True))")
		fs.StringVar(&o.pluginDir, "plugin-dir", "", "`DIR` searched for loopkernel-plugin-NAME (default $"+plugin.PluginDirEnv+")")
		fs.StringVar(&o.sha256, "sha256", "", "pin the plugin executable's SHA-256 to `HEX`; checked before every start")
		fs.BoolVar(&o.list, "list", false, "list the cases of --suite (with what each needs) and exit")
		fs.BoolVar(&o.keepGoing, "keep-going", false, "run every case even after the run has failed (no blocked cases)")
	},
	run: runConformance,
}

func runConformance(e *env, args []string) error {
	o := conformanceOpts
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	suites, err := conformanceSuites(o.suite, o.debug)
	if err != nil {
		return err
	}
	var match func(string) bool
	if o.run != "" {
		re, err := regexp.Compile(o.run)
		if err != nil {
			return usagef("--run: %v", err)
		}
		match = re.MatchString
	}
	if o.timeout <= 0 {
		return usagef("--timeout must be positive, not %v", o.timeout)
	}
	if o.list {
		return listCases(e.stdout, suites, match)
	}
	// --selector, a common flag, names the selector to certify; without
	// it, $LOOPKERNEL_SELECTOR or the policy's.
	p, err := e.policy()
	if err != nil {
		return err
	}
	spec := p.Selector

	// Supervision events (a plugin restarted, killed for not answering) go
	// to stderr: a certification run that needed restarts should say so.
	logger := hclog.New(&hclog.LoggerOptions{Name: "loopkernel", Output: e.stderr, Level: hclog.Warn})
	factory, err := plugin.Resolve(sdk.Selectors, spec, plugin.Options{
		PluginDir: o.pluginDir,
		Template:  plugin.Spec{Logger: logger, SHA256: o.sha256},
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	var all []conformance.Result
	var runErr error
	width := 0 // of the case-name column, set per suite by runOneSuite
	session, err := conformance.NewSession(conformance.Factory(factory), conformance.Options{
		Timeout:   o.timeout,
		Match:     match,
		Subject:   spec,
		KeepGoing: o.keepGoing,
		Progress:  func(r conformance.Result) { printProgress(e.stdout, r, width) },
	})
	if err != nil {
		return err
	}
	for _, s := range suites {
		rs, err := runOneSuite(ctx, e.stdout, session, s, spec, match, &width)
		all = append(all, rs...)
		if err != nil {
			runErr = fmt.Errorf("suite %s on %s: %w", s.Name, spec, err)
			break
		}
	}
	sum := conformance.Summarize(all)
	fmt.Fprintf(e.stdout, "\nconformance %s: %v (%s)\n", spec, sum, time.Since(start).Round(time.Millisecond))

	// Reports first, so that even an interrupted or failing run leaves them.
	if err := writeReport(o.junit, all, conformance.WriteJUnit); err != nil {
		return err
	}
	if err := writeReport(o.json, all, conformance.WriteJSON); err != nil {
		return err
	}
	switch {
	case runErr != nil:
		return runErr
	case len(all) == 0:
		return fmt.Errorf("no case matched --run %q", o.run)
	case !sum.OK():
		return fmt.Errorf("%s does not conform: %d failed, %d hung, %d blocked", spec, sum.Fail, sum.Hang, sum.Blocked)
	}
	return nil
}

// listCases prints the selected cases of suites, one a line, with what
// each needs; nothing is started.
func listCases(w io.Writer, suites []conformance.Suite, match func(string) bool) error {
	n := 0
	for _, s := range suites {
		for _, c := range s.Cases {
			if match != nil && !match(c.Name) {
				continue
			}
			n++
			line := c.Name
			if c.Needs != "" {
				line += "  needs " + c.Needs
			}
			if c.Alone {
				line += "  (runs alone)"
			}
			fmt.Fprintln(w, line)
		}
	}
	if n == 0 {
		return errors.New("no case matched --run")
	}
	return nil
}

// conformanceSuites maps --suite to the suites to run, in order.
func conformanceSuites(which string, debug bool) ([]conformance.Suite, error) {
	kernel := conformance.KernelSuite(conformance.KernelConfig{Debug: debug})
	net := conformance.NetSuite(conformance.NetConfig{Debug: debug})
	switch which {
	case "selector":
		return []conformance.Suite{conformance.SelectorSuite()}, nil
	case "kernel":
		return []conformance.Suite{kernel}, nil
	case "net":
		return []conformance.Suite{net}, nil
	case "all":
		return []conformance.Suite{conformance.SelectorSuite(), kernel, net}, nil
	}
	return nil, usagef("--suite %q: want selector, kernel, net or all", which)
}

// runOneSuite runs s in the session (whose Progress prints a line per
// finished case, in a name column *width wide) and prints a summary.
func runOneSuite(ctx context.Context, w io.Writer, ss *conformance.Session, s conformance.Suite, spec string,
	match func(string) bool, width *int) ([]conformance.Result, error) {
	*width = 0
	n := 0
	for _, c := range s.Cases {
		if match == nil || match(c.Name) {
			*width, n = max(*width, len(c.Name)), n+1
		}
	}
	if n == 0 {
		return nil, nil
	}
	fmt.Fprintf(w, "=== %s suite on %s (%d cases)\n", s.Name, spec, n)
	start := time.Now()
	rs, err := ss.Run(ctx, s)
	fmt.Fprintf(w, "--- %s: %v (%s)\n", s.Name, conformance.Summarize(rs), time.Since(start).Round(time.Millisecond))
	return rs, err
}

// printProgress writes one line per finished case; a failure's rules follow
// it, indented, so the line that names the broken rule is on screen.
func printProgress(w io.Writer, r conformance.Result, width int) {
	if r.Status == conformance.Running {
		return
	}
	line := fmt.Sprintf("%-4s  %-*s  %8s", strings.ToUpper(string(r.Status)), width, r.Case, fmtDuration(r.Duration))
	if r.Status == conformance.Skip {
		line += "  " + r.SkipReason
	}
	fmt.Fprintln(w, line)
	if !r.Incidents.Zero() {
		line += "  supervision: " + r.Incidents.String()
	}
	if r.Status == conformance.Blocked {
		// One line: the reason is the same for every blocked case.
		fmt.Fprintf(w, "        %s\n", strings.SplitN(r.Message, "\n", 2)[0])
		return
	}
	if r.Status == conformance.Fail || r.Status == conformance.Hang {
		for _, l := range strings.Split(strings.TrimRight(r.Message, "\n"), "\n") {
			fmt.Fprintf(w, "        %s\n", l)
		}
	}
}

// fmtDuration keeps the time column short: µs under a millisecond, ms
// under ten seconds, then seconds.
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < 10*time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// writeReport writes results to path with write; an empty path writes
// nothing.
func writeReport(path string, results []conformance.Result, write func(io.Writer, []conformance.Result) error) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	err = write(f, results)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	return nil
}
