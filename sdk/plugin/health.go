package plugin

import (
	"sync/atomic"
	"time"
)

// The health deadline follows the measured exchange time instead of a
// fixed reply timeout: a plugin that answers in 30 µs and then stops
// answering is hung long before 5 s have passed, and on a machine so
// loaded that exchanges take 50 ms a fixed 100 ms deadline would kill
// healthy plugins. The deadline is a multiple of the slowest recent
// exchange, between minGrace and Spec.ReplyTimeout.

const (
	// minGrace is the least a plugin is given past what it was asked
	// (a selector's wait timeout): a scheduler hiccup on a loaded machine
	// must not cost a restart.
	minGrace = 300 * time.Millisecond
	// graceFactor is how many times the slowest recent exchange the
	// deadline allows.
	graceFactor = 16
	// healthSlice bounds a selector's data-plane wait and is the call
	// families' ping interval: the longest a hang can go unnoticed before
	// the deadline even starts. An idle loop pays one round trip (some
	// 30 µs of CPU) per slice.
	healthSlice = 250 * time.Millisecond
)

// exchangeClock keeps a peak-decay estimate of the time an exchange with
// the plugin takes beyond what it was asked to wait: it jumps to any
// slower sample and decays by 1/64 per faster one, so one slow exchange
// widens the deadline at once and the widening fades over the next few
// hundred exchanges. Observe is called by the one goroutine that makes
// the exchanges; grace may be read from any.
type exchangeClock struct {
	est atomic.Int64 // nanoseconds
}

func (c *exchangeClock) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	est := time.Duration(c.est.Load())
	if d > est {
		est = d
	} else {
		est -= (est - d) / 64
	}
	c.est.Store(int64(est))
}

// grace is how long past the requested wait an exchange may take before
// the plugin counts as hung, capped at limit (Spec.ReplyTimeout).
func (c *exchangeClock) grace(limit time.Duration) time.Duration {
	g := graceFactor * time.Duration(c.est.Load())
	return min(max(g, minGrace), limit)
}
