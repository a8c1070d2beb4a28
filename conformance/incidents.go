package conformance

import (
	"fmt"
	"strings"

	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// Supervision incidents. A plugin that passes a case only because its
// supervisor restarted it has not conformed: the restart hid the fault from
// the case but not from a user, whose calls in flight fail and whose loop
// stalls while a new process starts. So every supervised back-end a case
// builds is watched, and what its supervisor had to do during the case is
// counted in the case's Result (and the reports), and fails the case unless
// the case provoked it on purpose (AllowIncidents).

// Incidents is what supervision had to do during a case, summed over the
// back-ends the case built (see plugin.Incidents).
type Incidents struct {
	// Restarts is how many plugin processes were started to replace a
	// failed one.
	Restarts int `json:"restarts,omitempty"`
	// Crashes: a plugin process died, or closed its data plane, on its own.
	Crashes int `json:"crashes,omitempty"`
	// HealthFailures: the health check found a plugin not answering within
	// its deadline and killed it.
	HealthFailures int `json:"health_failures,omitempty"`
	// ProtocolViolations: a plugin sent a frame that breaks the data-plane
	// protocol.
	ProtocolViolations int `json:"protocol_violations,omitempty"`
}

// Zero reports whether nothing happened.
func (i Incidents) Zero() bool { return i == Incidents{} }

func (i *Incidents) add(o Incidents) {
	i.Restarts += o.Restarts
	i.Crashes += o.Crashes
	i.HealthFailures += o.HealthFailures
	i.ProtocolViolations += o.ProtocolViolations
}

// String renders the counts for a summary line.
func (i Incidents) String() string {
	return fmt.Sprintf("%d restarts, %d crashes, %d health failures, %d protocol violations",
		i.Restarts, i.Crashes, i.HealthFailures, i.ProtocolViolations)
}

// supervised is a back-end whose supervisor counts incidents: every
// sdk/plugin Remote* back-end.
type supervised interface {
	Incidents() plugin.Incidents
}

// Watch counts the supervision incidents of b, a back-end the case built,
// from now until the case ends. NewSelector watches its selectors itself;
// a suite of another family calls Watch on each back-end it builds (a
// back-end that is not supervised, e.g. in process, is ignored).
func (c *C) Watch(b any) {
	s, ok := b.(supervised)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watched = append(c.watched, s)
}

// AllowIncidents says the case provokes supervision incidents on purpose
// (it kills a plugin to see its calls fail cleanly, say): they are still
// counted and reported, but do not fail the case. why is shown in the log.
func (c *C) AllowIncidents(why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.provoked = why
}

// The rules a supervision incident breaks, one per kind.
const (
	ruleNoCrash    = "the back-end does not crash"
	ruleAnswers    = "the back-end answers every call within its deadline (health check)"
	ruleProtocol   = "the plugin speaks the data-plane protocol (sdk/dataplane/WIRE.md)"
	ruleNoRestarts = "a certified back-end needs no restart"
)

// incidentsSoFar sums the incidents of the watched back-ends up to now,
// with the last incident of each and whether a supervisor gave up, and
// says whether the case provoked them.
func (c *C) incidentsSoFar() (sum Incidents, detail, provoked string) {
	c.mu.Lock()
	watched, provoked := c.watched, c.provoked
	c.mu.Unlock()
	var last []string
	gaveUp := false
	for _, w := range watched {
		pi := w.Incidents()
		sum.add(Incidents{Restarts: pi.Restarts, Crashes: pi.Exits, HealthFailures: pi.Unanswered,
			ProtocolViolations: pi.ProtocolViolations})
		if pi.Last != "" {
			last = append(last, pi.Last)
		}
		gaveUp = gaveUp || pi.GaveUp
	}
	if len(last) > 0 {
		detail = " (last: " + strings.Join(last, "; ") + ")"
	}
	if gaveUp {
		detail += "; the supervisor gave up"
	}
	return sum, detail, provoked
}

// settleIncidents sums the incidents of the watched back-ends and, unless
// the case provoked them, records the broken rules. Called once the case
// has ended; c.mu is not held.
func (c *C) settleIncidents() Incidents {
	sum, detail, provoked := c.incidentsSoFar()
	if sum.Zero() {
		return sum
	}
	if provoked != "" {
		c.Logf("supervision incidents provoked on purpose (%s): %v%s", provoked, sum, detail)
		return sum
	}
	if sum.Crashes > 0 {
		c.Errorf("rule: %s: the plugin process died %d time(s) and was restarted %d time(s)%s", ruleNoCrash, sum.Crashes, sum.Restarts, detail)
	}
	if sum.HealthFailures > 0 {
		c.Errorf("rule: %s: the supervisor killed the plugin %d time(s) for not answering%s", ruleAnswers, sum.HealthFailures, detail)
	}
	if sum.ProtocolViolations > 0 {
		c.Errorf("rule: %s: %d violation(s)%s", ruleProtocol, sum.ProtocolViolations, detail)
	}
	if sum.Crashes+sum.HealthFailures+sum.ProtocolViolations == 0 {
		c.Errorf("rule: %s: the plugin was restarted %d time(s)%s", ruleNoRestarts, sum.Restarts, detail)
	}
	return sum
}
