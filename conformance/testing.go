package conformance

import (
	"cmp"
	"context"
	"testing"
	"time"
)

// RunSelector binds every selector-contract case to t as a subtest, each
// building its selectors with f:
//
//	func TestMySelector(t *testing.T) { conformance.RunSelector(t, mysel.New) }
//
// Run it with -race: several cases call Wake from other goroutines.
func RunSelector(t *testing.T, f Factory) {
	t.Helper()
	RunSuite(t, SelectorSuite(), f)
}

// RunSuite binds every case of s to t as a subtest. The cases go through the
// same runner as the command line (so a hanging case is cut off at
// DefaultTimeout, or earlier if the test binary's deadline is nearer, instead
// of stalling the whole binary), and each result is replayed onto its
// subtest. After a hang the remaining cases are reported blocked, as on the
// command line (the hung case's goroutine still holds its selector).
func RunSuite(t *testing.T, s Suite, f Factory) {
	t.Helper()
	runSuite(t, s, f, "")
}

// runSuite is RunSuite with the subject the results name ("" for the
// selector's name): suites of other families, run without a selector
// factory, name their back-end here.
func runSuite(t *testing.T, s Suite, f Factory, subject string) {
	t.Helper()
	timeout := cmp.Or(s.Timeout, DefaultTimeout)
	if dl, ok := t.Deadline(); ok {
		if left := time.Until(dl) / 2; left < timeout {
			timeout = left
		}
	}
	ss, err := NewSession(f, Options{Timeout: timeout, Subject: subject})
	if err != nil {
		t.Fatal(err)
	}
	for _, cs := range s.Cases {
		t.Run(cs.Name, func(t *testing.T) {
			one := s
			one.Cases = []Case{cs}
			rs, _ := ss.Run(context.Background(), one)
			replay(t, rs[0])
		})
	}
}

func replay(t *testing.T, r Result) {
	t.Helper()
	if r.Log != "" {
		t.Log(r.Log)
	}
	if !r.Incidents.Zero() {
		t.Logf("supervision: %v", r.Incidents)
	}
	switch r.Status {
	case Pass:
	case Skip:
		t.Skip(r.SkipReason)
	case Hang:
		t.Errorf("HANG: %s", r.Message)
	case Blocked:
		t.Errorf("BLOCKED: %s", r.Message)
	default:
		t.Error(r.Message)
	}
}
