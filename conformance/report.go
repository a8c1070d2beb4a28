package conformance

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// WriteJSON writes results as one indented JSON array, the form a script or
// a later comparison run reads back with encoding/json.
func WriteJSON(w io.Writer, results []Result) error {
	if results == nil {
		results = []Result{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(results); err != nil {
		return fmt.Errorf("conformance: write JSON: %w", err)
	}
	return nil
}

// The JUnit XML schema as CI systems (Jenkins, GitLab, GitHub reporters)
// read it: one <testsuite> per suite and subject, a hang as an <error> so it
// stands apart from an ordinary failure, a blocked case as a <failure> of
// type "blocked", and the supervision incidents as <properties> of the
// suite (and a line of the case's output).
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Props    *junitProps `xml:"properties,omitempty"`
	Cases    []junitCase `xml:"testcase"`
	seconds  float64
	inc      Incidents
}

type junitProps struct {
	Props []junitProp `xml:"property"`
}

type junitProp struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitProblem `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

func seconds(f float64) string { return fmt.Sprintf("%.3f", f) }

// WriteJUnit writes results as JUnit XML. Results are grouped into one
// <testsuite> per (suite, subject) pair, in order of first appearance.
func WriteJUnit(w io.Writer, results []Result) error {
	var doc junitSuites
	index := map[[2]string]int{}
	var total float64
	for _, r := range results {
		key := [2]string{r.Suite, r.Subject}
		i, ok := index[key]
		if !ok {
			i = len(doc.Suites)
			index[key] = i
			doc.Suites = append(doc.Suites, junitSuite{Name: r.Suite + " [" + r.Subject + "]"})
		}
		s := &doc.Suites[i]
		sec := r.Duration.Seconds()
		s.seconds += sec
		total += sec
		jc := junitCase{
			Name:      r.Case,
			Classname: r.Suite + "." + r.Subject,
			Time:      seconds(sec),
			SystemOut: r.Log,
		}
		if !r.Incidents.Zero() {
			line := "supervision: " + r.Incidents.String()
			if r.Provoked != "" {
				line += " (provoked: " + r.Provoked + ")"
			}
			if jc.SystemOut != "" {
				line = "\n" + line
			}
			jc.SystemOut += line
		}
		s.inc.add(r.Incidents)
		switch r.Status {
		case Blocked:
			jc.Failure = &junitProblem{Message: firstLine(r.Message), Type: "blocked", Text: r.Message}
			s.Failures++
		case Fail:
			jc.Failure = &junitProblem{Message: firstLine(r.Message), Type: "fail", Text: r.Message}
			s.Failures++
		case Hang:
			jc.Error = &junitProblem{Message: firstLine(r.Message), Type: "hang", Text: r.Message}
			s.Errors++
		case Skip:
			jc.Skipped = &junitProblem{Message: r.SkipReason}
			s.Skipped++
		}
		s.Tests++
		s.Cases = append(s.Cases, jc)
	}
	for i := range doc.Suites {
		s := &doc.Suites[i]
		s.Time = seconds(s.seconds)
		s.Props = &junitProps{Props: []junitProp{
			{"restarts", fmt.Sprint(s.inc.Restarts)},
			{"crashes", fmt.Sprint(s.inc.Crashes)},
			{"health_failures", fmt.Sprint(s.inc.HealthFailures)},
			{"protocol_violations", fmt.Sprint(s.inc.ProtocolViolations)},
		}}
		doc.Tests += s.Tests
		doc.Failures += s.Failures
		doc.Errors += s.Errors
		doc.Skipped += s.Skipped
	}
	doc.Time = seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("conformance: write JUnit: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("conformance: write JUnit: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("conformance: write JUnit: %w", err)
	}
	return nil
}

// firstLine picks the line of a failure most worth a CI summary: the first
// naming a rule, else the first non-empty one.
func firstLine(msg string) string {
	for _, l := range strings.Split(msg, "\n") {
		if i := strings.Index(l, "rule: "); i >= 0 {
			return strings.TrimSpace(l[i:])
		}
	}
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}
