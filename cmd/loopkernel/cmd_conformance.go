package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/policy"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// `loopkernel conformance` is the certifier as a binary, the way csi-sanity
// is one: point it at any back-end of a family (a selector, a resolver, a
// function executor), in-process or out-of-process, bundled or third-party,
// and it runs the same cases `go test` runs, prints each result as it lands,
// and writes the reports a CI system reads.

var conformanceOpts struct {
	suite     string
	timeout   timeoutFlag
	run       string
	junit     string
	json      string
	debug     bool
	pluginDir string
	sha256    string
	list      bool
	keepGoing bool
}

// timeoutFlag is --timeout: a duration that remembers whether it was given,
// so that a suite with a longer limit of its own (the executor's) keeps it
// unless the user chose one.
type timeoutFlag struct {
	d   time.Duration
	set bool
}

func (f *timeoutFlag) String() string { return f.d.String() }

func (f *timeoutFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	f.d, f.set = d, true
	return nil
}

var conformanceCmd = &command{
	name:     "conformance",
	synopsis: "[--selector|--resolver|--executor SPEC] [--suite selector,kernel,net,process,resolver,executor|all]",
	summary:  "certify a selector, resolver or executor back-end against its family's contracts",
	help: `
Runs the contract suites named by --suite (a comma-separated list) against
the back-end of their family, named by --selector, --resolver or --executor
(default: the --policy's):

  NAME          a back-end compiled into this binary, in this process
  plugin:NAME   that back-end in a supervised plugin process (this binary
                re-executed), or the executable loopkernel-plugin-NAME in the
                plugin directory
  plugin:PATH   the plugin executable at PATH

On the selector (--selector):
  selector   the Selector seam itself, including how late a Wait may be
             against the in-process epoll selector measured in the same run
  kernel     event loops on the selector: what asyncio programs rely on
  net        the loop's transports, servers, datagram endpoints, sock_*
             operations and sendfile over loopback
  process    pipes, subprocesses and streams.Process on the selector's loops
  all        the four above (the default)
On the resolver (--resolver):
  resolver   getaddrinfo/getnameinfo against DNS servers this command starts
             on 127.0.0.1 (a back-end that takes settings is pointed at them
             through its resolv_conf, hosts and timeout settings; one that
             takes none runs only the cases that need no server)
On the function executor (--executor):
  executor   results, errors, panics, cancellation, crash isolation, queues,
             100 MiB payloads, each as the back-end claims them; a
             third-party executor plugin must import the conformance package
             (it registers the functions the cases call)

Every Wait of every selector case is held to the contract (events of live,
ready registrations only; a Wait ends once its timeout passed or a Wake
came). --list prints the cases, with what each needs, without running
anything.

Each case prints one line when it ends: its status, how long it took, and
for a skip what it needs that this run lacks (a capability of the back-end,
or debug mode), for a failure the rule it broke. A case that does not end
within --timeout, or is found stuck in a Wait nothing ends, is reported as a
hang and abandoned. A plugin that needs its supervisor (a restart after a
crash, a kill for not answering, a data-plane protocol violation) fails the
case it happened in; the counts are in the summary and the reports.

The run fails fast: when the selector suite fails, the kernel, net and
process suites (built on it) are reported blocked instead of run, and after
a hang every later case of that back-end is blocked; --keep-going runs them
anyway.

The exit status is 0 when nothing failed, hung or was blocked, 1 otherwise.
--junit and --json write the results (with each case's log and incidents)
for CI and later comparison; they are written even when cases fail.`,
	flags: func(fs *flag.FlagSet) {
		o := &conformanceOpts
		fs.StringVar(&o.suite, "suite", "all", "which contracts, comma-separated: selector, kernel, net, process, resolver, executor, or all (the selector's four)")
		o.timeout = timeoutFlag{d: conformance.DefaultTimeout}
		fs.Var(&o.timeout, "timeout", "per-case limit `DURATION`; a case past it is reported as a hang (the executor suite's cases, which move 100 MiB, get 90s unless it is given)")
		fs.StringVar(&o.run, "run", "", "run only the cases whose name matches `REGEXP`")
		fs.StringVar(&o.junit, "junit", "", "write JUnit XML results to `FILE`")
		fs.StringVar(&o.json, "json", "", "write JSON results to `FILE`")
		fs.BoolVar(&o.debug, "debug", false, "run the kernel, net and process suites' loops in debug mode (asyncio's loop.set_debug(True))")
		fs.StringVar(&o.pluginDir, "plugin-dir", "", "`DIR` searched for loopkernel-plugin-NAME (default $"+plugin.PluginDirEnv+")")
		fs.StringVar(&o.sha256, "sha256", "", "pin the plugin executable's SHA-256 to `HEX`; checked before every start")
		fs.BoolVar(&o.list, "list", false, "list the cases of --suite (with what each needs) and exit")
		fs.BoolVar(&o.keepGoing, "keep-going", false, "run every case even after the run has failed (no blocked cases)")
	},
	run: runConformance,
}

// A family is the suites of one back-end family to run and the back-end
// they certify; each gets its own Session, so fail-fast stays within the
// back-end it is about.
type family struct {
	name string // selector, resolver, executor
	spec string // the back-end certified
	// suites are what --list shows; open binds them to the back-end.
	suites []conformance.Suite
	// open binds the back-end (which may start a plugin to probe it) and
	// makes the family's session and its bound suites; --list never calls
	// it, so it starts nothing.
	open func(opts conformance.Options) (*conformance.Session, []conformance.Suite, error)
}

func runConformance(e *env, args []string) error {
	o := conformanceOpts
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	var match func(string) bool
	if o.run != "" {
		re, err := regexp.Compile(o.run)
		if err != nil {
			return usagef("--run: %v", err)
		}
		match = re.MatchString
	}
	if o.timeout.d <= 0 {
		return usagef("--timeout must be positive, not %v", o.timeout.d)
	}
	// --selector, --resolver and --executor, common flags, name the
	// back-ends; without them, their environment variables or the
	// policy's.
	p, err := e.policy()
	if err != nil {
		return err
	}
	// Supervision events (a plugin restarted, killed for not answering) go
	// to stderr: a certification run that needed restarts should say so.
	logger := hclog.New(&hclog.LoggerOptions{Name: "loopkernel", Output: e.stderr, Level: hclog.Warn})
	popts := plugin.Options{PluginDir: o.pluginDir, Template: plugin.Spec{Logger: logger, SHA256: o.sha256}}
	families, err := conformanceFamilies(o.suite, o.debug, p, popts)
	if err != nil {
		return err
	}
	if o.list {
		var suites []conformance.Suite
		for _, f := range families {
			suites = append(suites, f.suites...)
		}
		return listCases(e.stdout, suites, match)
	}
	subjects := make([]string, len(families))
	for i, f := range families {
		subjects[i] = f.spec
		if len(families) > 1 {
			subjects[i] = f.name + " " + f.spec
		}
	}
	subject := strings.Join(subjects, ", ")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	var all []conformance.Result
	var runErr error
	width := 0 // of the case-name column, set per suite by runOneSuite
	for _, f := range families {
		opts := conformance.Options{
			Match:     match,
			Subject:   f.spec,
			KeepGoing: o.keepGoing,
			Progress:  func(r conformance.Result) { printProgress(e.stdout, r, width) },
		}
		if o.timeout.set || f.name != "executor" {
			opts.Timeout = o.timeout.d
		}
		session, suites, err := f.open(opts)
		if err != nil {
			return err
		}
		for _, s := range suites {
			rs, err := runOneSuite(ctx, e.stdout, session, s, f.spec, match, &width)
			all = append(all, rs...)
			if err != nil {
				runErr = fmt.Errorf("suite %s on %s: %w", s.Name, f.spec, err)
				break
			}
		}
		if runErr != nil {
			break
		}
	}
	sum := conformance.Summarize(all)
	fmt.Fprintf(e.stdout, "\nconformance %s: %v (%s)\n", subject, sum, time.Since(start).Round(time.Millisecond))

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
		return fmt.Errorf("%s does not conform: %d failed, %d hung, %d blocked", subject, sum.Fail, sum.Hang, sum.Blocked)
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

// suiteNames are the values --suite takes, in the order they run.
var suiteNames = []string{"selector", "kernel", "net", "process", "resolver", "executor"}

// conformanceFamilies maps --suite to the families to certify, each with
// its suites in order.
func conformanceFamilies(which string, debug bool, p *policy.Policy, popts plugin.Options) ([]family, error) {
	want := map[string]bool{}
	for _, w := range strings.Split(which, ",") {
		switch w = strings.TrimSpace(w); {
		case w == "all":
			for _, n := range suiteNames[:4] {
				want[n] = true
			}
		case slices.Contains(suiteNames, w):
			want[w] = true
		default:
			return nil, usagef("--suite %q: want a comma-separated list of %s, or all", which, strings.Join(suiteNames, ", "))
		}
	}
	var fams []family
	sel := family{name: "selector", spec: p.Selector}
	for _, s := range []conformance.Suite{
		conformance.SelectorSuite(),
		conformance.KernelSuite(conformance.KernelConfig{Debug: debug}),
		conformance.NetSuite(conformance.NetConfig{Debug: debug}),
		conformance.ProcessSuite(conformance.NetConfig{Debug: debug}),
	} {
		if want[strings.TrimSuffix(s.Name, "-debug")] {
			sel.suites = append(sel.suites, s)
		}
	}
	if len(sel.suites) > 0 {
		sel.open = func(opts conformance.Options) (*conformance.Session, []conformance.Suite, error) {
			factory, err := plugin.Resolve(sdk.Selectors, sel.spec, popts)
			if err != nil {
				return nil, nil, err
			}
			ss, err := conformance.NewSession(conformance.Factory(factory), opts)
			return ss, sel.suites, err
		}
		fams = append(fams, sel)
	}
	if want["resolver"] {
		spec := cmp.Or(p.Resolver, sdk.DefaultResolver)
		fams = append(fams, ownBackends("resolver", spec, conformance.ResolverSuite(conformance.ResolverConfig{Subject: spec}),
			func() (conformance.Suite, error) {
				cfg, err := conformance.ResolverBinding(spec, popts)
				return conformance.ResolverSuite(cfg), err
			}))
	}
	if want["executor"] {
		spec := cmp.Or(p.Executor, sdk.DefaultExecutor)
		fams = append(fams, ownBackends("executor", spec, conformance.ExecutorSuite(conformance.ExecutorConfig{Name: spec}),
			func() (conformance.Suite, error) {
				cfg, err := conformance.ExecutorBinding(spec, popts)
				return conformance.ExecutorSuite(cfg), err
			}))
	}
	return fams, nil
}

// ownBackends is a family whose one suite builds its back-ends in its cases
// (the resolver's, the executor's): its session has no selector factory,
// and bind binds the suite to the spec (unbound lists its cases).
func ownBackends(name, spec string, unbound conformance.Suite, bind func() (conformance.Suite, error)) family {
	return family{name: name, spec: spec, suites: []conformance.Suite{unbound},
		open: func(opts conformance.Options) (*conformance.Session, []conformance.Suite, error) {
			s, err := bind()
			if err != nil {
				return nil, nil, err
			}
			ss, err := conformance.NewSession(nil, opts)
			return ss, []conformance.Suite{s}, err
		}}
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
