package main

import (
	"crypto/sha256"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/conformance"
)

// longGuard bounds a whole certification run (a plugin process per case on
// a loaded two-core machine); like hangGuard it is no timing target.
const longGuard = 5 * time.Minute

// loopkernelLong is loopkernel with longGuard.
func loopkernelLong(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return loopkernelWithin(t, longGuard, env, args...)
}

// buildPlugin returns a builder of the plugin program pkg into the test
// binary's directory as loopkernel-plugin-NAME, built on first use.
func buildPlugin(name, pkg string) func() (string, error) {
	return sync.OnceValues(func() (string, error) {
		path := filepath.Join(filepath.Dir(binary), "loopkernel-plugin-"+name)
		out, err := exec.Command("go", "build", "-o", path, pkg).CombinedOutput()
		if err != nil {
			return "", &buildError{err, out}
		}
		return path, nil
	})
}

// brokenPlugin is conformance/internal/brokenplugin, built on first use into
// a directory removed when the test binary's last test ends.
var brokenPlugin = buildPlugin("broken", "../../conformance/internal/brokenplugin")

type buildError struct {
	err error
	out []byte
}

func (b *buildError) Error() string { return b.err.Error() + "\n" + string(b.out) }

// progressLine is one finished case as the command prints it.
var progressLine = regexp.MustCompile(`^(PASS|SKIP|FAIL|HANG|BLOCKED)  (\S+)\s+(\S+)(?:  (.*))?$`)

// parseProgress returns the case lines of a run's output by case name.
func parseProgress(t *testing.T, stdout string) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	for _, l := range strings.Split(stdout, "\n") {
		if m := progressLine.FindStringSubmatch(l); m != nil {
			_, err := time.ParseDuration(m[3])
			require.NoError(t, err, "the time column of %q", l)
			got[m[2]] = m[1:]
		}
	}
	return got
}

// readReports parses both report files and checks they agree with each other
// and with the progress lines.
func readReports(t *testing.T, junitPath, jsonPath string, progress map[string][]string) []conformance.Result {
	t.Helper()
	raw, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	var results []conformance.Result
	require.NoError(t, json.Unmarshal(raw, &results), "JSON report parses")
	require.Len(t, results, len(progress), "one JSON result per progress line")
	for _, r := range results {
		line, ok := progress[r.Case]
		if assert.True(t, ok, "case %s has a progress line", r.Case) {
			assert.Equal(t, strings.ToUpper(string(r.Status)), line[0], r.Case)
		}
	}

	raw, err = os.ReadFile(junitPath)
	require.NoError(t, err)
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name string `xml:"name,attr"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	require.NoError(t, xml.Unmarshal(raw, &doc), "JUnit report parses")
	assert.Equal(t, len(results), doc.Tests)
	var fail, hang, skip int
	for _, r := range results {
		switch r.Status {
		case conformance.Fail, conformance.Blocked:
			fail++
		case conformance.Hang:
			hang++
		case conformance.Skip:
			skip++
		}
	}
	assert.Equal(t, fail, doc.Failures)
	assert.Equal(t, hang, doc.Errors)
	assert.Equal(t, skip, doc.Skipped)
	return results
}

// TestConformanceBundled certifies every bundled back-end in both placements
// through the command, reports included: whole suites, all passing.
func TestConformanceBundled(t *testing.T) {
	for _, spec := range []string{"epoll", "poll", "plugin:epoll", "plugin:poll"} {
		t.Run(spec, func(t *testing.T) {
			dir := t.TempDir()
			junit, js := filepath.Join(dir, "r.xml"), filepath.Join(dir, "r.json")
			r := loopkernelLong(t, nil, "conformance", "--selector="+spec, "--junit", junit, "--json", js)
			assert.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			assert.Contains(t, r.stdout, "=== selector suite on "+spec)
			assert.Contains(t, r.stdout, "=== kernel suite on "+spec)
			assert.Contains(t, r.stdout, "=== net suite on "+spec)
			assert.Contains(t, r.stdout, "=== process suite on "+spec)
			assert.Regexp(t, `(?m)^conformance `+regexp.QuoteMeta(spec)+`: \d+ cases: \d+ pass, \d+ skip, 0 fail, 0 hang, 0 blocked; supervision: 0 restarts, 0 crashes, 0 health failures, 0 protocol violations \(`, r.stdout)

			progress := parseProgress(t, r.stdout)
			results := readReports(t, junit, js, progress)
			suites := map[string]int{}
			for _, res := range results {
				suites[res.Suite]++
				assert.Equal(t, spec, res.Subject)
				if res.Status == conformance.Skip {
					// Every skip names what was missing, on its progress
					// line as in the report.
					assert.Regexp(t, `^needs `, res.SkipReason, res.Case)
					assert.Equal(t, res.SkipReason, progress[res.Case][3], res.Case)
				}
			}
			assert.Equal(t, len(conformance.SelectorSuite().Cases), suites["selector"], "the whole selector suite ran")
			assert.Equal(t, len(conformance.KernelSuite(conformance.KernelConfig{}).Cases), suites["kernel"], "the whole kernel suite ran")
			assert.Equal(t, len(conformance.NetSuite(conformance.NetConfig{}).Cases), suites["net"], "the whole net suite ran")
			assert.Equal(t, len(conformance.ProcessSuite(conformance.NetConfig{}).Cases), suites["process"], "the whole process suite ran")
		})
	}
}

// TestConformanceCatchesBrokenPlugin certifies the deliberately broken
// selector served out of process: the run fails, exits non-zero, and every
// failure names the rule it broke.
func TestConformanceCatchesBrokenPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a plugin executable")
	}
	path, err := brokenPlugin()
	require.NoError(t, err)
	dir := t.TempDir()
	junit, js := filepath.Join(dir, "r.xml"), filepath.Join(dir, "r.json")
	start := time.Now()
	r := loopkernelLong(t, nil, "conformance", "--selector=plugin:"+path, "--junit", junit, "--json", js)
	took := time.Since(start)
	assert.Equal(t, 1, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	// It fails fast: the kernel and net suites, built on the selector, are
	// blocked rather than run case by case into their timeouts.
	assert.Less(t, took, 2*time.Minute, "a broken plugin must fail certification quickly")
	assert.Regexp(t, `(?m)^BLOCKED  kernel/\S+\s+\S+$\n\s+blocked: not run because the selector suite it is built on failed \(first: selector/`, r.stdout)
	assert.Regexp(t, `(?m)^BLOCKED  net/\S+`, r.stdout)
	assert.Regexp(t, `(?m)^conformance plugin:\S+: \d+ cases: \d+ pass, \d+ skip, \d+ fail, \d+ hang, \d+ blocked; supervision: 0 restarts`, r.stdout)
	assert.Contains(t, r.stderr, "does not conform")
	assert.Regexp(t, `(?m)^FAIL  `, r.stdout)

	progress := parseProgress(t, r.stdout)
	results := readReports(t, junit, js, progress)
	failed := 0
	for _, res := range results {
		if res.Status == conformance.Blocked {
			assert.NotEqual(t, "selector", res.Suite, res.Case)
			continue
		}
		if res.Status != conformance.Fail {
			continue
		}
		failed++
		assert.Contains(t, res.Message, "rule: ", "%s: a failure names its rule", res.Case)
		// The rule is printed under the FAIL line, not only in the reports.
		rule := res.Message[strings.Index(res.Message, "rule: "):]
		rule, _, _ = strings.Cut(rule, "\n")
		assert.Contains(t, r.stdout, rule, res.Case)
	}
	assert.Positive(t, failed)
	// Cases the breakage does not touch still pass: the suite tells the
	// broken rules apart instead of failing everything.
	assert.Equal(t, "PASS", progress["selector/duplicate-registration"][0])
	assert.Equal(t, "PASS", progress["selector/closed-selector"][0])
}

func TestConformanceOptions(t *testing.T) {
	// --run narrows, the default selector is the policy's, --debug names
	// the debug suite, and a skip shows its capability.
	r := loopkernel(t, nil, "conformance", "--policy", "poll", "--run", "^(selector/wake/|kernel/call-soon/)", "--debug")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "=== selector suite on poll (4 cases)")
	assert.Contains(t, r.stdout, "=== kernel-debug suite on poll")
	for name := range parseProgress(t, r.stdout) {
		assert.Regexp(t, `^(selector/wake/|kernel/call-soon/)`, name)
	}

	// A case that once needed debug mode (the loop running a task is now
	// known in every mode) passes with and without --debug.
	for _, extra := range [][]string{nil, {"--debug"}} {
		r = loopkernel(t, nil, append([]string{"conformance", "--selector", "epoll", "--suite", "kernel", "--run", "^kernel/run/other-loop-from-task$"}, extra...)...)
		require.Equal(t, 0, r.code, r.stdout+r.stderr)
		assert.Regexp(t, `(?m)^PASS  kernel/run/other-loop-from-task\s+\S+$`, r.stdout)
		assert.Contains(t, r.stdout, "1 cases: 1 pass, 0 skip, 0 fail, 0 hang, 0 blocked")
	}

	// A third-party plugin by name from --plugin-dir, pinned by its digest.
	sum, err := os.ReadFile(thirdParty)
	require.NoError(t, err)
	r = loopkernel(t, nil, "conformance", "--selector", "plugin:example", "--plugin-dir", filepath.Dir(thirdParty),
		"--sha256", fmt.Sprintf("%x", sha256.Sum256(sum)), "--suite", "selector", "--run", "^selector/(wake/|read-readiness/)")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "=== selector suite on plugin:example (6 cases)")
	assert.Contains(t, r.stdout, "6 cases: 6 pass, 0 skip, 0 fail, 0 hang, 0 blocked")

	// A case past --timeout is a hang: reported, counted, and fatal to the
	// exit status.
	r = loopkernel(t, nil, "conformance", "--selector", "poll", "--suite", "selector", "--run", "^selector/timeout/honoured$", "--timeout", "1ms")
	assert.Equal(t, 1, r.code, r.stdout+r.stderr)
	assert.Regexp(t, `(?m)^HANG  selector/timeout/honoured\s+\S+$\n\s+case did not end within 1ms`, r.stdout)
	assert.Contains(t, r.stdout, "1 cases: 0 pass, 0 skip, 0 fail, 1 hang, 0 blocked")
	assert.Contains(t, r.stderr, "0 failed, 1 hung, 0 blocked")

	// --list prints the cases without starting anything.
	r = loopkernel(t, nil, "conformance", "--list", "--selector", "plugin:nosuch-but-not-started", "--run", "^selector/(many-fds|wake/)")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Equal(t, "selector/wake/interrupts-wait\nselector/wake/before-wait\nselector/wake/coalesces\nselector/wake/concurrent\nselector/many-fds  needs fds:1000\n", r.stdout)
	r = loopkernel(t, nil, "conformance", "--list")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	assert.Len(t, lines, len(conformance.SelectorSuite().Cases)+len(conformance.KernelSuite(conformance.KernelConfig{}).Cases)+
		len(conformance.NetSuite(conformance.NetConfig{}).Cases)+len(conformance.ProcessSuite(conformance.NetConfig{}).Cases))
	for _, l := range lines {
		assert.Regexp(t, `^(selector|kernel|net|process)/`, l)
	}
	// The other families' suites list their cases with what each needs,
	// without a back-end started.
	r = loopkernel(t, nil, "conformance", "--list", "--suite", "resolver,executor", "--resolver", "plugin:nosuch", "--run", "killed|sigkill|localhost")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Equal(t, "resolver/localhost-is-loopback\n"+
		"resolver/plugin-killed-with-lookups-in-flight  needs resolver:settings,plugin-process\n"+
		"executor/sigkill-mid-call  needs executor:crash-isolation\n", r.stdout)

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--suite", "nope"}, 2, `--suite "nope": want a comma-separated list of selector, kernel, net, process, resolver, executor, or all`},
		{[]string{"--suite", "resolver", "--resolver", "nosuch"}, 1, `resolver "nosuch": unknown back-end`},
		{[]string{"--suite", "executor", "--executor", "plugin:nosuch", "--plugin-dir", t.TempDir()}, 1, "no loopkernel-plugin-nosuch"},
		{[]string{"--run", "("}, 2, "--run: error parsing regexp"},
		{[]string{"--timeout", "0s"}, 2, "--timeout must be positive"},
		{[]string{"extra"}, 2, "unexpected arguments"},
		{[]string{"--selector", "kqueue"}, 1, `--selector "kqueue": unknown back-end (have [epoll poll]`},
		{[]string{"--selector", "plugin:nosuch", "--plugin-dir", t.TempDir()}, 1, "no loopkernel-plugin-nosuch"},
		{[]string{"--selector", "epoll", "--run", "^nothing-matches$"}, 1, "no case matched"},
		{[]string{"--selector", "plugin:" + thirdParty, "--sha256", strings.Repeat("00", 32)}, 1, "does not match its pinned SHA-256"},
	} {
		r := loopkernel(t, nil, append([]string{"conformance"}, c.args...)...)
		assert.Equal(t, c.code, r.code, "%v: %s", c.args, r.stderr)
		assert.Contains(t, r.stderr, c.want, "%v", c.args)
	}
}

// familyPlugin is conformance/internal/familyplugin, a third-party plugin
// of the resolver and executor families.
var familyPlugin = buildPlugin("family", "../../conformance/internal/familyplugin")

// TestConformanceResolverAndExecutor certifies resolver and executor
// back-ends from the command line, as the selector is: bundled in process
// and as a plugin, a third-party plugin by path and from the plugin
// directory, with the reports; and a third-party plugin with a planted
// fault fails, exit status 1, naming the rule.
func TestConformanceResolverAndExecutor(t *testing.T) {
	// Cases that need the DNS servers the command starts on 127.0.0.1,
	// and the plugin kill, and the executor's crash and cancel cases.
	const some = "^(resolver/(hosts-file-first|ttl-expiry|both-families-in-rfc6724-order|plugin-killed-with-lookups-in-flight)|" +
		"executor/(results-and-errors|concurrent-calls|sigkill-mid-call|cancel-during-call|back-pressure))$"
	path, err := familyPlugin()
	require.NoError(t, err)
	for _, c := range []struct {
		resolver, executor string
		pass, skip         int
	}{
		{"dns", "process", 8, 1},                  // in process: no plugin to kill
		{"plugin:dns", "plugin:goroutine", 8, 1},  // no queue bound out of process
		{"plugin:" + path, "plugin:family", 8, 1}, // third party, by path and by name
	} {
		t.Run(c.resolver+","+c.executor, func(t *testing.T) {
			dir := t.TempDir()
			junit, js := filepath.Join(dir, "r.xml"), filepath.Join(dir, "r.json")
			r := loopkernelLong(t, nil, "conformance", "--suite", "resolver,executor", "--resolver", c.resolver, "--executor", c.executor,
				"--plugin-dir", filepath.Dir(path), "--run", some, "--junit", junit, "--json", js)
			require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			assert.Contains(t, r.stdout, "=== resolver suite on "+c.resolver+" (4 cases)")
			assert.Contains(t, r.stdout, "=== executor suite on "+c.executor+" (5 cases)")
			assert.Regexp(t, fmt.Sprintf(`(?m)^conformance resolver %s, executor %s: 9 cases: %d pass, %d skip, 0 fail, 0 hang, 0 blocked`,
				regexp.QuoteMeta(c.resolver), regexp.QuoteMeta(c.executor), c.pass, c.skip), r.stdout)
			progress := parseProgress(t, r.stdout)
			results := readReports(t, junit, js, progress)
			for _, res := range results {
				want := c.resolver
				if res.Suite == "executor" {
					want = c.executor
				}
				assert.Equal(t, want, res.Subject, res.Case)
				if res.Status == conformance.Skip {
					assert.Regexp(t, `^needs `, res.SkipReason, res.Case)
				}
			}
		})
	}

	// A faulty third-party resolver fails; so does a faulty executor.
	for _, m := range []struct{ mutant, suite, rule string }{
		{"drops-aaaa", "resolver", "A and AAAA are both asked"},
		{"loses-panics", "executor", "a panic in the function is the call's *sdk.CallError"},
	} {
		r := loopkernelLong(t, []string{"FAMILYPLUGIN_MUTANT=" + m.mutant}, "conformance", "--suite", m.suite,
			"--"+m.suite, "plugin:"+path, "--run", some+"|panic")
		assert.Equal(t, 1, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		assert.Contains(t, r.stdout, "rule: "+m.rule, m.mutant)
		assert.Contains(t, r.stderr, "does not conform", m.mutant)
	}
}
