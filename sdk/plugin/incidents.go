package plugin

import (
	"errors"
	"sync"

	"github.com/loopkernel/loopkernel/sdk/dataplane"
)

// Incidents counts what supervision has had to do for one back-end since
// Launch: the failures it saw, by kind, and the restarts they led to. A
// healthy plugin has none. The conformance suite reads them after every case
// so that a plugin that only passes because it is restarted does not pass
// (a restart is recovery, not conformance). They are counted on the host,
// so reading them costs no round trip and works after Close or a give-up.
type Incidents struct {
	// Restarts is how many processes were started to replace a failed one.
	Restarts int
	// Exits: the process died, or closed or broke off its data plane, on
	// its own, or a replacement failed to start.
	Exits int
	// Unanswered: the family's health check found the process not answering
	// within Spec.ReplyTimeout and killed it.
	Unanswered int
	// ProtocolViolations: the plugin sent the host a frame that breaks the
	// data-plane protocol (dataplane.ErrProtocol; WIRE.md).
	ProtocolViolations int
	// GaveUp is set once the supervisor has given up (sdk.ErrPluginFailed).
	GaveUp bool
	// Last is the cause of the last failure, for a report.
	Last string
}

// Failures is the number of failures counted, whatever their kind.
func (i Incidents) Failures() int { return i.Exits + i.Unanswered + i.ProtocolViolations }

// incidentLog is the supervisor's tally behind Incidents.
type incidentLog struct {
	mu  sync.Mutex
	inc Incidents
}

// note classifies the cause of one failure the supervisor is about to
// recover from.
func (l *incidentLog) note(cause error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case errors.Is(cause, errNoAnswer):
		l.inc.Unanswered++
	case errors.Is(cause, dataplane.ErrProtocol):
		l.inc.ProtocolViolations++
	default:
		l.inc.Exits++
	}
	if cause != nil {
		l.inc.Last = cause.Error()
	}
}

// Incidents reports the failures and restarts of this back-end's plugin so
// far (see Incidents).
func (s *supervisor) Incidents() Incidents {
	s.incidents.mu.Lock()
	inc := s.incidents.inc
	s.incidents.mu.Unlock()
	s.mu.Lock()
	inc.Restarts, inc.GaveUp = s.total, s.gaveUp != nil
	s.mu.Unlock()
	return inc
}
