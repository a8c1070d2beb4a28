package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/conformance/internal/brokensel"
	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBrokenSelectorIsCaught is the suite's own certificate: run against a
// selector that drops every second event and ignores Wake, it must fail the
// cases for exactly those rules, name the rules, finish without hanging, and
// still pass cases the breakage does not touch.
func TestBrokenSelectorIsCaught(t *testing.T) {
	want := map[string]string{
		"selector/level-triggered/read": ruleLevelRead,
		"selector/wake/interrupts-wait": ruleWakeInterrupts,
		"selector/wake/before-wait":     ruleWakeBeforeWait,
		"selector/unknown-token":        "",
		"selector/closed-selector":      "",
	}
	for _, r := range runNamed(t, SelectorSuite(), brokensel.New, 0, want) {
		assert.Equal(t, "selector", r.Suite)
		assert.Equal(t, brokensel.Name, r.Subject)
		rule := want[r.Case]
		if rule == "" {
			assert.Equal(t, Pass, r.Status, "%s: %s", r.Case, r.Message)
			continue
		}
		assert.Equal(t, Fail, r.Status, "%s should fail", r.Case)
		assert.Contains(t, r.Message, "rule: "+rule, "%s failure must name its rule", r.Case)
		assert.Equal(t, "rule: "+rule, firstLine(r.Message)[:len("rule: "+rule)], "the JUnit summary line leads with the rule")
	}
}

// runNamed runs the cases of s that want names (timeout 0: the default)
// and requires a result for each.
func runNamed[V any](t *testing.T, s Suite, f Factory, timeout time.Duration, want map[string]V) []Result {
	t.Helper()
	rs, err := Run(context.Background(), s, f, Options{
		Timeout: timeout,
		Match:   func(name string) bool { _, ok := want[name]; return ok },
	})
	require.NoError(t, err)
	require.Len(t, rs, len(want))
	return rs
}

// fakeSel is the least selector the runner needs: it only has to report
// capabilities and close.
type fakeSel struct {
	sdk.Selector
	caps sdk.Capabilities
}

func (f fakeSel) Capabilities() sdk.Capabilities { return f.caps }
func (f fakeSel) Close() error                   { return nil }

func fakeFactory(caps sdk.Capabilities) Factory {
	return func() (sdk.Selector, error) { return fakeSel{caps: caps}, nil }
}

func TestRunOutcomes(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var cleaned sync.WaitGroup
	cleaned.Add(1)
	suite := Suite{Name: "runner", Cases: []Case{
		{Name: "pass", Run: func(c *C) { c.Logf("hello %d", 1) }},
		{Name: "errorf", Run: func(c *C) {
			assert.Equal(c, 1, 2, "rule: one is two")
			c.Logf("still running after Errorf")
		}},
		{Name: "failnow", Run: func(c *C) {
			c.Cleanup(cleaned.Done)
			require.True(c, false, "rule: true is false")
			panic("not reached")
		}},
		{Name: "panic", Run: func(c *C) { panic("boom") }},
		{Name: "skip", Run: func(c *C) { c.Skip("nothing to do here") }},
		{Name: "needs-files", Needs: "regular-files", Run: func(c *C) { t.Error("ran a case whose capability is missing") }},
		{Name: "needs-fds", Needs: "fds:100", Run: func(c *C) { t.Error("ran a case whose capability is missing") }},
		{Name: "needs-few-fds", Needs: "fds:10", Run: func(c *C) {}},
		{Name: "needs-unknown", Needs: "teleport", Run: func(c *C) {}},
		{Name: "hang", Run: func(c *C) { <-release }},
		{Name: "after-hang", Run: func(c *C) {}},
		{Name: "filtered-out", Run: func(c *C) { t.Error("Match should have excluded this case") }},
	}}
	var progress []string
	rs, err := Run(context.Background(), suite, fakeFactory(sdk.Capabilities{Name: "fake", MaxFDs: 50}), Options{
		Timeout:  200 * time.Millisecond,
		Match:    func(name string) bool { return name != "filtered-out" },
		Subject:  "fake (test)",
		Progress: func(r Result) { progress = append(progress, r.Case+":"+string(r.Status)) },
		// Without it, every case after the hang would be Blocked (see
		// TestSessionFailsFast).
		KeepGoing: true,
	})
	require.NoError(t, err)
	cleaned.Wait() // FailNow still runs cleanups

	got := map[string]Result{}
	for _, r := range rs {
		assert.Equal(t, "runner", r.Suite)
		assert.Equal(t, "fake (test)", r.Subject)
		got[r.Case] = r
	}
	require.Len(t, rs, len(suite.Cases)-1)
	assert.Equal(t, Pass, got["pass"].Status)
	assert.Equal(t, "hello 1", got["pass"].Log)
	assert.Equal(t, Fail, got["errorf"].Status)
	assert.Contains(t, got["errorf"].Message, "rule: one is two")
	assert.Equal(t, "still running after Errorf", got["errorf"].Log)
	assert.Equal(t, Fail, got["failnow"].Status)
	assert.Contains(t, got["failnow"].Message, "rule: true is false")
	assert.Equal(t, Fail, got["panic"].Status)
	assert.Contains(t, got["panic"].Message, "panic: boom")
	assert.Equal(t, Skip, got["skip"].Status)
	assert.Equal(t, "nothing to do here", got["skip"].SkipReason)
	assert.Equal(t, Skip, got["needs-files"].Status)
	assert.Contains(t, got["needs-files"].SkipReason, "regular-files")
	assert.Equal(t, Skip, got["needs-fds"].Status)
	assert.Contains(t, got["needs-fds"].SkipReason, "fds:100")
	assert.Equal(t, Pass, got["needs-few-fds"].Status)
	assert.Equal(t, Skip, got["needs-unknown"].Status)
	assert.Contains(t, got["needs-unknown"].SkipReason, `unknown capability "teleport"`)
	assert.Equal(t, Hang, got["hang"].Status)
	assert.Contains(t, got["hang"].Message, "did not end within 200ms")
	assert.Equal(t, Pass, got["after-hang"].Status, "the runner moves on after a hang")

	require.Len(t, progress, 2*len(rs))
	assert.Equal(t, []string{"pass:run", "pass:pass", "errorf:run", "errorf:fail"}, progress[:4])
}

// TestSessionFailsFast: after a hang the rest of the run is blocked, and a
// suite whose required suite failed is blocked whole, each blocked case
// naming why, at once; KeepGoing runs them anyway.
func TestSessionFailsFast(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	base := Suite{Name: "base", Cases: []Case{
		{Name: "base/ok", Run: func(c *C) {}},
		{Name: "base/broken", Run: func(c *C) { c.Errorf("rule: the base holds"); c.FailNow() }},
	}}
	ran := false
	upper := Suite{Name: "upper", Requires: []string{"base"}, Cases: []Case{
		{Name: "upper/a", Run: func(c *C) { ran = true }},
	}}
	other := Suite{Name: "other", Cases: []Case{
		{Name: "other/hang", Run: func(c *C) { <-release }},
		{Name: "other/after", Run: func(c *C) { ran = true }},
	}}
	ss, err := NewSession(nil, Options{Timeout: 100 * time.Millisecond, Subject: "s"})
	require.NoError(t, err)
	var all []Result
	for _, s := range []Suite{base, upper, other} {
		rs, err := ss.Run(context.Background(), s)
		require.NoError(t, err)
		all = append(all, rs...)
	}
	require.Len(t, all, 5)
	assert.False(t, ran, "a blocked case must not run")
	assert.Equal(t, []Status{Pass, Fail, Blocked, Hang, Blocked}, []Status{all[0].Status, all[1].Status, all[2].Status, all[3].Status, all[4].Status})
	assert.Contains(t, all[2].Message, "the base suite it is built on failed (first: base/broken: rule: the base holds")
	assert.Contains(t, all[4].Message, "other/hang hung earlier in this run")
	sum := Summarize(all)
	assert.Equal(t, Summary{Cases: 5, Pass: 1, Fail: 1, Hang: 1, Blocked: 2}, sum)
	assert.False(t, sum.OK())

	ss, err = NewSession(nil, Options{KeepGoing: true})
	require.NoError(t, err)
	_, err = ss.Run(context.Background(), base)
	require.NoError(t, err)
	rs, err := ss.Run(context.Background(), upper)
	require.NoError(t, err)
	assert.Equal(t, Pass, rs[0].Status)
	assert.True(t, ran)
}

func TestRunFactoryAndContextErrors(t *testing.T) {
	boom := errors.New("no selector today")
	_, err := Run(context.Background(), SelectorSuite(), func() (sdk.Selector, error) { return nil, boom }, Options{})
	require.ErrorIs(t, err, boom)

	ctx, cancel := context.WithCancel(context.Background())
	suite := Suite{Name: "ctx", Cases: []Case{
		{Name: "first", Run: func(c *C) { cancel() }},
		{Name: "second", Run: func(c *C) { t.Error("ran after the context was cancelled") }},
	}}
	rs, err := Run(ctx, suite, fakeFactory(sdk.Capabilities{Name: "fake"}), Options{})
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, rs, 1)
}

func sampleResults() []Result {
	return []Result{
		{Suite: "selector", Subject: "epoll", Case: "a", Status: Pass, Duration: 1500 * time.Microsecond, Log: "log <line>"},
		{Suite: "selector", Subject: "epoll", Case: "b", Status: Fail, Duration: time.Millisecond,
			Message: "\tError Trace:\tx.go:1\n\tMessages:\trule: something & more\n"},
		{Suite: "selector", Subject: "poll", Case: "c", Status: Skip, SkipReason: "needs capability regular-files"},
		{Suite: "selector", Subject: "poll", Case: "d", Status: Hang, Duration: time.Second, Message: "case did not end within 1s"},
	}
}

func TestWriteJUnit(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, WriteJUnit(&buf, sampleResults()))
	require.True(t, strings.HasPrefix(buf.String(), "<?xml"))
	var doc junitSuites
	require.NoError(t, xml.Unmarshal(buf.Bytes(), &doc), buf.String())
	assert.Equal(t, 4, doc.Tests)
	assert.Equal(t, 1, doc.Failures)
	assert.Equal(t, 1, doc.Errors)
	assert.Equal(t, 1, doc.Skipped)
	require.Len(t, doc.Suites, 2)
	assert.Equal(t, "selector [epoll]", doc.Suites[0].Name)
	assert.Equal(t, "0.003", doc.Suites[0].Time)
	assert.Equal(t, "log <line>", doc.Suites[0].Cases[0].SystemOut)
	require.NotNil(t, doc.Suites[0].Cases[1].Failure)
	assert.Equal(t, "rule: something & more", doc.Suites[0].Cases[1].Failure.Message)
	assert.Equal(t, "selector [poll]", doc.Suites[1].Name)
	require.NotNil(t, doc.Suites[1].Cases[0].Skipped)
	assert.Equal(t, "needs capability regular-files", doc.Suites[1].Cases[0].Skipped.Message)
	require.NotNil(t, doc.Suites[1].Cases[1].Error)
	assert.Equal(t, "hang", doc.Suites[1].Cases[1].Error.Type)
}

func TestWriteJSON(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, WriteJSON(&buf, sampleResults()))
	var back []Result
	require.NoError(t, json.Unmarshal(buf.Bytes(), &back))
	assert.Equal(t, sampleResults(), back)

	buf.Reset()
	require.NoError(t, WriteJSON(&buf, nil))
	assert.Equal(t, "[]\n", buf.String())
}

// TestRunSuiteReplaysOntoSubtests binds a real suite to a real selector
// through RunSuite, the go test entry, on a filtered case list.
func TestRunSuiteReplaysOntoSubtests(t *testing.T) {
	suite := SelectorSuite()
	var cases []Case
	for _, cs := range suite.Cases {
		if cs.Name == "selector/regular-file" || cs.Name == "selector/read-readiness/socket" {
			cases = append(cases, cs)
		}
	}
	require.Len(t, cases, 2)
	suite.Cases = cases
	RunSuite(t, suite, selector.NewEpoll)
}

// supervisedSel is a selector whose supervisor reports incidents.
type supervisedSel struct {
	fakeSel
	inc plugin.Incidents
}

func (s supervisedSel) Incidents() plugin.Incidents { return s.inc }

// TestIncidentsFailUnprovokedCases: a supervised back-end's restarts fail
// the case that built it, naming the rule for each kind, unless the case
// provoked them; either way they are counted in the result, the summary
// and the JUnit report.
func TestIncidentsFailUnprovokedCases(t *testing.T) {
	inc := plugin.Incidents{Restarts: 3, Exits: 1, Unanswered: 1, ProtocolViolations: 1, Last: "dataplane: peer gone"}
	f := func() (sdk.Selector, error) {
		return supervisedSel{fakeSel{caps: sdk.Capabilities{Name: "sup"}}, inc}, nil
	}
	suite := Suite{Name: "sup", Cases: []Case{
		{Name: "sup/unprovoked", Run: func(c *C) { c.NewSelector() }},
		{Name: "sup/provoked", Run: func(c *C) { c.AllowIncidents("kills its plugin on purpose"); c.NewSelector() }},
		{Name: "sup/none", Run: func(c *C) {}},
	}}
	rs, err := Run(context.Background(), suite, f, Options{})
	require.NoError(t, err)
	require.Len(t, rs, 3)
	want := Incidents{Restarts: 3, Crashes: 1, HealthFailures: 1, ProtocolViolations: 1}
	assert.Equal(t, Fail, rs[0].Status)
	assert.Equal(t, want, rs[0].Incidents)
	for _, rule := range []string{ruleNoCrash, ruleAnswers, ruleProtocol} {
		assert.Contains(t, rs[0].Message, "rule: "+rule)
	}
	assert.Contains(t, rs[0].Message, "dataplane: peer gone")
	assert.Equal(t, Pass, rs[1].Status, rs[1].Message)
	assert.Equal(t, want, rs[1].Incidents)
	assert.Equal(t, "kills its plugin on purpose", rs[1].Provoked)
	assert.Contains(t, rs[1].Log, "provoked on purpose")
	assert.True(t, rs[2].Incidents.Zero())
	assert.Equal(t, Incidents{Restarts: 6, Crashes: 2, HealthFailures: 2, ProtocolViolations: 2}, Summarize(rs).Incidents)

	var buf bytes.Buffer
	require.NoError(t, WriteJUnit(&buf, rs))
	var doc struct {
		Suites []struct {
			Props []struct {
				Name  string `xml:"name,attr"`
				Value string `xml:"value,attr"`
			} `xml:"properties>property"`
			Cases []struct {
				Out string `xml:"system-out"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	require.NoError(t, xml.Unmarshal(buf.Bytes(), &doc), buf.String())
	require.Len(t, doc.Suites, 1)
	props := map[string]string{}
	for _, p := range doc.Suites[0].Props {
		props[p.Name] = p.Value
	}
	assert.Equal(t, map[string]string{"restarts": "6", "crashes": "2", "health_failures": "2", "protocol_violations": "2"}, props)
	assert.Contains(t, doc.Suites[0].Cases[1].Out, "supervision: 3 restarts, 1 crashes, 1 health failures, 1 protocol violations (provoked: kills its plugin on purpose)")

	buf.Reset()
	require.NoError(t, WriteJSON(&buf, rs))
	assert.Contains(t, buf.String(), `"health_failures": 1`)
	assert.Contains(t, buf.String(), `"incidents_provoked": "kills its plugin on purpose"`)
	assert.NotContains(t, buf.String()[strings.Index(buf.String(), `"sup/none"`):], `"incidents"`, "no incidents, no field")
}

// TestJUnitBlocked: a blocked case is a failure of type "blocked".
func TestJUnitBlocked(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, WriteJUnit(&buf, []Result{{Suite: "net", Subject: "x", Case: "net/a", Status: Blocked, Message: "blocked: not run because ..."}}))
	var doc junitSuites
	require.NoError(t, xml.Unmarshal(buf.Bytes(), &doc))
	assert.Equal(t, 1, doc.Failures)
	require.NotNil(t, doc.Suites[0].Cases[0].Failure)
	assert.Equal(t, "blocked", doc.Suites[0].Cases[0].Failure.Type)
	assert.Equal(t, "blocked: not run because ...", doc.Suites[0].Cases[0].Failure.Message)
}
