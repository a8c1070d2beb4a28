package mutants_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/conformance/internal/mutants"
	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// The mutants are registered in this test binary only, so that it can
// serve each of them out of process by re-executing itself, exactly as the
// loopkernel binary serves its bundled back-ends: selectors, resolvers and
// executors alike.
func init() {
	for _, m := range mutants.All() {
		sdk.Selectors.Register("mutant-"+m.Name, m.New)
	}
	for _, m := range mutants.Resolvers() {
		sdk.Resolvers.Register("mutant-"+m.Name, m.New)
	}
	for _, m := range mutants.Executors() {
		sdk.Executors.Register("mutant-"+m.Name, m.New)
	}
}

func TestMain(m *testing.M) {
	plugin.ServeBundled()
	testkit.QuickRaceExit()
	os.Exit(m.Run())
}

// certifyLimit is the bound on how long a broken back-end may take
// to fail certification: until its first failed case, when the verdict is
// known. (The rest of the selector suite still runs, to show every symptom;
// the kernel and net suites are blocked at once.)
const certifyLimit = 2 * time.Minute

// parallel is how many certifications run at once. They spend most of
// their time waiting (for timeouts the mutants break, for the checker's
// overrun), so more than the two cores pays; the lateness bounds are
// measured against a reference in the same case, so the load does not
// make a mutant pass.
const parallel = 4

// certification is one run of the whole contract against one mutant in
// one placement, as `loopkernel conformance` runs it.
type certification struct {
	m       mutants.Mutant
	spec    string
	results []conformance.Result
	err     error
	took    time.Duration
	// verdict is how long it took until the first case failed or hung: from
	// then on the certification has failed, whatever the rest shows.
	verdict time.Duration
}

func certify(m mutants.Mutant, spec string) certification {
	cert := certification{m: m, spec: spec}
	start := time.Now()
	defer func() { cert.took = time.Since(start) }()
	f, err := plugin.Resolve(sdk.Selectors, spec, plugin.Options{})
	if err != nil {
		cert.err = err
		return cert
	}
	ss, err := conformance.NewSession(conformance.Factory(f), conformance.Options{
		Subject: spec,
		Progress: func(r conformance.Result) {
			if cert.verdict == 0 && (r.Status == conformance.Fail || r.Status == conformance.Hang) {
				cert.verdict = time.Since(start)
			}
		},
	})
	if err != nil {
		cert.err = err
		return cert
	}
	for _, s := range []conformance.Suite{
		conformance.SelectorSuite(),
		conformance.KernelSuite(conformance.KernelConfig{}),
		conformance.NetSuite(conformance.NetConfig{}),
	} {
		rs, err := ss.Run(context.Background(), s)
		cert.results = append(cert.results, rs...)
		if err != nil {
			cert.err = err
			break
		}
	}
	cert.took = time.Since(start)
	return cert
}

// TestMutantsFailCertification is the mutation test of the suite: every
// mutant, in process and served as a plugin, must fail certification, with
// a failure that names the rule the mutant breaks, within two minutes, and
// the kernel and net suites (built on the selector) must be blocked rather
// than run. -short keeps the in-process placement only.
func TestMutantsFailCertification(t *testing.T) {
	var specs []struct {
		m    mutants.Mutant
		spec string
	}
	for _, m := range mutants.All() {
		specs = append(specs, struct {
			m    mutants.Mutant
			spec string
		}{m, "mutant-" + m.Name})
		if !testing.Short() && m.InProcessOnly == "" {
			specs = append(specs, struct {
				m    mutants.Mutant
				spec string
			}{m, "plugin:mutant-" + m.Name})
		}
	}
	certs := make([]certification, len(specs))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, s := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			certs[i] = certify(s.m, s.spec)
		}()
	}
	wg.Wait()
	for _, cert := range certs {
		t.Run(cert.spec, func(t *testing.T) {
			if cert.err != nil {
				t.Fatalf("certification of %s did not run to a verdict: %v", cert.spec, cert.err)
			}
			rule := cert.m.Rule
			if cert.m.PluginRule != "" && strings.HasPrefix(cert.spec, "plugin:") {
				rule = cert.m.PluginRule
			}
			judge(t, cert.spec, cert.m.Fault, rule, cert.results, cert.verdict, cert.took)
			for _, r := range cert.results {
				if (r.Status == conformance.Pass || r.Status == conformance.Skip) && r.Suite != "selector" {
					t.Errorf("%s: the %s suite ran (%s) although the selector suite had failed", r.Case, r.Suite, r.Status)
				}
			}
		})
	}
}

// judge checks the verdict of one certification of a mutant whose fault
// breaks rule: it failed, within certifyLimit, with a failure naming rule.
func judge(t *testing.T, spec, fault, rule string, results []conformance.Result, verdict, took time.Duration) {
	t.Helper()
	sum := conformance.Summarize(results)
	t.Logf("%s (%s): %v; failed after %v, run over after %v", spec, fault, sum, verdict.Round(time.Millisecond), took.Round(time.Millisecond))
	assert.False(t, sum.OK(), "a back-end whose fault is %q was certified", fault)
	assert.Less(t, verdict, certifyLimit, "failing %s took too long", spec)
	named := false
	for _, r := range results {
		if r.Status == conformance.Fail || r.Status == conformance.Hang {
			t.Logf("%s %s: %s", strings.ToUpper(string(r.Status)), r.Case, firstLine(r.Message))
			named = named || strings.Contains(r.Message, "rule: "+rule)
		}
	}
	assert.True(t, named, "no failure names the rule %q that %s breaks (%s)", rule, spec, fault)
}

func firstLine(msg string) string {
	for _, l := range strings.Split(msg, "\n") {
		if i := strings.Index(l, "rule: "); i >= 0 {
			return strings.TrimSpace(l[i:])
		}
	}
	l, _, _ := strings.Cut(strings.TrimSpace(msg), "\n")
	return l
}
