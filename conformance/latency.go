package conformance

import (
	"slices"
	"time"

	"golang.org/x/sys/unix"

	// The reference every lateness bound is derived from: the bundled
	// in-process epoll selector, measured in the same case as the subject,
	// sample for sample, so that both see the same machine load.
	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// Lateness. asyncio programs rely on timers firing on time and readiness
// and wake-ups arriving promptly, so a selector that sleeps three times the
// timeout it was given, or delays every event by 100 ms, must not be
// certified, although every functional case would pass it. A fixed bound in
// seconds would either pass such a selector or misfire on a loaded machine,
// so each bound is derived from a reference measured in the same case: the
// bundled in-process epoll selector, sampled in pairs with the subject (the
// reference, then the subject at once), so that both see the same load.
// The subject's lateness is its sample minus the reference's in the same
// pair; the median of those over the rounds may be latencyFloor plus
// latencySlack times the reference's median. The floor covers what a
// correct plugin placement adds (a data-plane exchange: two more context
// switches, each a few milliseconds of scheduling delay on a saturated
// two-core machine), the slack a reference slowed down by load (the
// subject's extra context switches then wait longer too); the median of
// paired differences is used so that the load, which delays both samples
// of a pair alike, cancels out, and one descheduled sample cannot decide
// either way.
const (
	latencyFloor = 40 * time.Millisecond
	latencySlack = 0.5
	// latencyRounds pairs are sampled per check.
	latencyRounds = 11
	// latencyTimeout is the timeout whose overshoot is measured: long
	// enough that "three times the timeout" is far past the bound.
	latencyTimeout = 100 * time.Millisecond
)

// Rules the lateness cases check.
const (
	ruleTimeoutPrompt = "Wait returns promptly once its timeout has passed"
	ruleReadyPrompt   = "readiness that arrives during a Wait ends it promptly"
	ruleWakePrompt    = ruleWakeInterrupts + ", promptly"
)

func latencyCases() []Case {
	return []Case{
		{Name: "selector/latency/timeout", Run: func(c *C) {
			c.compareLatency(ruleTimeoutPrompt, "the overshoot of an idle Wait past its "+latencyTimeout.String()+" timeout", 7, sampleOvershoot)
		}},
		{Name: "selector/latency/readiness", Run: func(c *C) {
			c.compareLatency(ruleReadyPrompt, "the time from a write to the Wait reporting it", latencyRounds, sampleReadiness)
		}},
		{Name: "selector/latency/wake", Run: func(c *C) {
			c.compareLatency(ruleWakePrompt, "the time from Wake to the blocked Wait returning", latencyRounds, sampleWake)
		}},
	}
}

// sampler measures one sample on s (failing the case if it cannot).
type sampler func(c *C, s sdk.Selector) time.Duration

// compareLatency takes rounds pairs of samples, the reference's then the
// subject's (a selector from the factory, under the contract checker), and
// fails the case with rule when the median lateness of the subject over
// the reference is past the bound. It stops early once more than half the
// pairs are past it: the verdict cannot change.
func (c *C) compareLatency(rule, what string, rounds int, sample sampler) {
	ref, err := selector.NewEpoll()
	c.fixture("build the reference in-process epoll selector", err)
	c.Cleanup(func() { ref.Close() })
	subj := c.NewSelector()
	var rs, ss, late []time.Duration
	over := 0
	for range rounds {
		r := sample(c, ref)
		s := sample(c, subj)
		rs, ss, late = append(rs, r), append(ss, s), append(late, s-r)
		if s-r > latencyFloor+time.Duration(latencySlack*float64(median(rs))) {
			over++
		}
		if over > rounds/2 {
			break
		}
	}
	rm, lm := median(rs), median(late)
	bound := latencyFloor + time.Duration(latencySlack*float64(rm))
	c.Logf("%s: subject %v, reference (in-process epoll, paired in the same case) %v; median lateness %v, bound %v",
		what, roundAll(ss), roundAll(rs), lm, bound)
	if lm > bound {
		c.Errorf("rule: %s: %s was %v later than the reference in-process epoll selector's at the median of %d paired samples (subject %v, reference %v); the bound is %v + %v× the reference's median %v = %v",
			rule, what, lm.Round(10*time.Microsecond), len(late), roundAll(ss), roundAll(rs), latencyFloor, latencySlack, rm.Round(10*time.Microsecond), bound.Round(10*time.Microsecond))
		c.FailNow()
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func roundAll(ds []time.Duration) string {
	out := "["
	for i, d := range ds {
		if i > 0 {
			out += " "
		}
		out += d.Round(10 * time.Microsecond).String()
	}
	return out + "]"
}

// wakeSampleLimit bounds one wake sample.
const wakeSampleLimit = 500 * time.Millisecond

// latencyToken is the registration every sampler makes (and removes).
var latencyToken = sdk.MakeToken(0xfff0, 1)

// latencyWait calls Wait on s, failing the case on an error.
func (c *C) latencyWait(s sdk.Selector, buf []sdk.Event, timeout time.Duration) int {
	n, err := s.Wait(buf, timeout)
	if err != nil {
		c.Errorf("rule: Wait succeeds on a healthy selector: %v", err)
		c.FailNow()
	}
	return n
}

// latencyRegister registers fd under latencyToken and returns its removal.
func (c *C) latencyRegister(s sdk.Selector, fd int, ev sdk.Events) func() {
	mustOK(c, s.Register(fd, latencyToken, ev), msgRegister)
	return func() { mustOK(c, s.Unregister(latencyToken), msgUnregister) }
}

func mustOK(c *C, err error, msg string) {
	if err != nil {
		c.Errorf("%s: %v", msg, err)
		c.FailNow()
	}
}

// sampleOvershoot: an idle Wait with latencyTimeout, past which it ran.
func sampleOvershoot(c *C, s sdk.Selector) time.Duration {
	a, _ := c.socketpair()
	defer c.latencyRegister(s, a, sdk.Read)()
	buf := make([]sdk.Event, 4)
	start := time.Now()
	c.latencyWait(s, buf, latencyTimeout)
	return max(0, time.Since(start)-latencyTimeout)
}

// sampleReadiness: a Wait blocked on an idle socket, which another
// goroutine makes readable; the time from the write to the Wait returning
// with it.
func sampleReadiness(c *C, s sdk.Selector) time.Duration {
	a, b := c.socketpair()
	defer c.latencyRegister(s, a, sdk.Read)()
	wrote := make(chan time.Time, 1)
	go func() {
		time.Sleep(2 * time.Millisecond)
		t := time.Now()
		unix.Write(b, []byte{1})
		wrote <- t
	}()
	buf := make([]sdk.Event, 4)
	deadline := time.Now().Add(settle)
	for {
		n := c.latencyWait(s, buf, time.Until(deadline))
		for _, ev := range buf[:n] {
			if ev.Token == latencyToken && ev.Events&sdk.Read != 0 {
				return max(0, time.Since(<-wrote))
			}
		}
		if time.Now().After(deadline) {
			c.Errorf("rule: %s: a socket made readable during a Wait was not reported within %v", ruleReadyPrompt, settle)
			c.FailNow()
		}
	}
}

// sampleWake: a Wait blocked with nothing ready, which another goroutine
// wakes; the time from Wake to the Wait returning. The Wait is given a
// timeout of wakeSampleLimit so a lost wake costs one sample that long, not
// a hang (and is far past the bound).
func sampleWake(c *C, s sdk.Selector) time.Duration {
	a, _ := c.socketpair()
	defer c.latencyRegister(s, a, sdk.Read)()
	woke := make(chan time.Time, 1)
	errc := make(chan error, 1)
	go func() {
		time.Sleep(2 * time.Millisecond)
		t := time.Now()
		errc <- s.Wake()
		woke <- t
	}()
	c.latencyWait(s, make([]sdk.Event, 4), wakeSampleLimit)
	ret := time.Now()
	if err := <-errc; err != nil {
		c.Errorf("rule: Wake succeeds on an open selector: %v", err)
		c.FailNow()
	}
	lat := max(0, ret.Sub(<-woke))
	// A Wait that returned before the Wake leaves it pending: consume it
	// so the next sample starts clean.
	c.latencyWait(s, make([]sdk.Event, 4), 0)
	return lat
}
