package conformance

import "fmt"

// Summary counts a run's results: what every report (the command's summary
// line, JSON, JUnit) shows, whatever the suite's family.
type Summary struct {
	Cases, Pass, Skip, Fail, Hang, Blocked int
	// Incidents sums the supervision incidents of every case, provoked or
	// not (an unprovoked one has already failed its case).
	Incidents Incidents
}

// Summarize counts results.
func Summarize(results []Result) Summary {
	var s Summary
	for _, r := range results {
		s.Cases++
		switch r.Status {
		case Pass:
			s.Pass++
		case Skip:
			s.Skip++
		case Fail:
			s.Fail++
		case Hang:
			s.Hang++
		case Blocked:
			s.Blocked++
		}
		s.Incidents.add(r.Incidents)
	}
	return s
}

// OK reports whether the results certify the subject: nothing failed, hung
// or was blocked.
func (s Summary) OK() bool { return s.Fail+s.Hang+s.Blocked == 0 }

// String is the summary line: the counts, then the supervision incidents.
func (s Summary) String() string {
	return fmt.Sprintf("%d cases: %d pass, %d skip, %d fail, %d hang, %d blocked; supervision: %v",
		s.Cases, s.Pass, s.Skip, s.Fail, s.Hang, s.Blocked, s.Incidents)
}
