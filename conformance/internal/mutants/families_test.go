package mutants_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/conformance/internal/mutants"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// familyCert is one certification of a resolver or executor mutant, bound
// as `loopkernel conformance --suite resolver|executor` binds a spec.
type familyCert struct {
	name, fault, rule, spec string
	bind                    func(spec string) (conformance.Suite, error)
	results                 []conformance.Result
	err                     error
	took, verdict           time.Duration
}

func (c *familyCert) run() {
	start := time.Now()
	defer func() { c.took = time.Since(start) }()
	suite, err := c.bind(c.spec)
	if err != nil {
		c.err = err
		return
	}
	ss, err := conformance.NewSession(nil, conformance.Options{
		Subject: c.spec,
		Progress: func(r conformance.Result) {
			if c.verdict == 0 && (r.Status == conformance.Fail || r.Status == conformance.Hang) {
				c.verdict = time.Since(start)
			}
		},
	})
	if err != nil {
		c.err = err
		return
	}
	c.results, c.err = ss.Run(context.Background(), suite)
}

func bindResolver(spec string) (conformance.Suite, error) {
	cfg, err := conformance.ResolverBinding(spec, plugin.Options{})
	return conformance.ResolverSuite(cfg), err
}

func bindExecutor(spec string) (conformance.Suite, error) {
	cfg, err := conformance.ExecutorBinding(spec, plugin.Options{})
	return conformance.ExecutorSuite(cfg), err
}

// familyCerts lists a certification per mutant of m and placement.
func familyCerts[T any](ms []mutants.Of[T], bind func(string) (conformance.Suite, error)) []*familyCert {
	var out []*familyCert
	for _, m := range ms {
		for _, spec := range []string{"mutant-" + m.Name, "plugin:mutant-" + m.Name} {
			if testing.Short() && strings.HasPrefix(spec, "plugin:") {
				continue
			}
			rule := m.Rule
			if m.PluginRule != "" && strings.HasPrefix(spec, "plugin:") {
				rule = m.PluginRule
			}
			out = append(out, &familyCert{name: m.Name, fault: m.Fault, rule: rule, spec: spec, bind: bind})
		}
	}
	return out
}

// TestResolverAndExecutorMutantsFailCertification is the mutation test of
// the resolver and executor suites: every mutant, in process and served as
// a plugin, must fail its family's certification with a failure naming the
// rule it breaks, within two minutes. -short keeps the in-process
// placement only.
func TestResolverAndExecutorMutantsFailCertification(t *testing.T) {
	certs := append(familyCerts(mutants.Resolvers(), bindResolver), familyCerts(mutants.Executors(), bindExecutor)...)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, c := range certs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c.run()
		})
	}
	wg.Wait()
	for _, c := range certs {
		t.Run(c.spec, func(t *testing.T) {
			if c.err != nil {
				t.Fatalf("certification of %s did not run to a verdict: %v", c.spec, c.err)
			}
			judge(t, c.spec, c.fault, c.rule, c.results, c.verdict, c.took)
		})
	}
}
