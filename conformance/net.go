package conformance

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/loopkernel/loopkernel/driver/readiness"
	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
	// The net cases resolve "localhost" (asyncio's tests do too), so the
	// suite brings the default resolver: it certifies I/O back-ends, and a
	// caller that imported no resolver would otherwise see lookups fail.
	_ "github.com/loopkernel/loopkernel/plugins/resolver"
	"github.com/loopkernel/loopkernel/sdk"
)

// The networking contract: what the kernel's transports, servers, datagram
// endpoints, sock_* operations and sendfile promise a program written
// against asyncio, checked on loops built on each selector the factory
// makes. Every byte goes over loopback (127.0.0.0/8, ::1) or Unix sockets.
//
// The placement matters to these cases even though they never call the
// selector themselves: a transport is a chain of readiness waits, so a
// selector that loses, delays or duplicates readiness shows up here as a
// stalled round trip, a back-pressure that never lifts, or a half-close
// that is never seen, which is the failure an application would meet.

// NetConfig chooses how the loops of the networking suite are built.
type NetConfig struct {
	// Debug builds every loop with kernel.WithDebug(true).
	Debug bool
	// Driver, if set, builds the I/O driver (sdk.Driver) each loop runs
	// on; the factory's selectors are then not used. Nil builds the
	// readiness driver over a selector from the factory, as kernel.New
	// does. A case that needs an optional operation the driver lacks
	// (sdk.CapWatch, sdk.CapSendfile) is skipped with the capability named.
	Driver func() (sdk.Driver, error)
	// Gaps names cases the driver is known not to pass, each with why;
	// they are skipped saying so, so a known gap stays visible in every
	// run instead of being dropped from the suite.
	Gaps map[string]string
}

// NetSuite returns the networking contract for cfg. A name in cfg.Gaps
// that is no case of the suite panics: a misspelt gap would otherwise skip
// nothing and hide that the case it meant now runs.
func NetSuite(cfg NetConfig) Suite {
	s := loopSuite("net", cfg, netStreamCases, netServerCases, netConnectCases, netDatagramCases,
		netSockCases, netSendfileCases, netTLSCases, netEdgeCases)
	for gap := range cfg.Gaps {
		if !slices.ContainsFunc(s.Cases, func(c Case) bool { return c.Name == gap }) {
			panic(fmt.Sprintf("conformance: NetConfig.Gaps names %q, which is no case of the net suite", gap))
		}
	}
	return s
}

// loopSuite binds groups of cases on loops built as cfg says into the suite
// name ("name-debug" in debug mode). It is built on the selector, as the
// kernel suite is: blocked in a Session once the selector suite has
// failed. A case that needs a driver operation the driver lacks is skipped
// with the capability named.
func loopSuite(name string, cfg NetConfig, groups ...[]ncase) Suite {
	if cfg.Debug {
		name += "-debug"
	}
	var cases []Case
	for _, group := range groups {
		for _, nc := range group {
			cases = append(cases, Case{Name: nc.name, Needs: nc.needs, Alone: nc.alone, Run: func(c *C) {
				if why, ok := cfg.Gaps[nc.name]; ok {
					c.Skip("known gap of this driver: " + why)
				}
				n := &nt{C: c, cfg: cfg}
				if nc.op != "" {
					if caps := n.newDriver().Capabilities(); !caps.Has(nc.op) {
						c.Skip(fmt.Sprintf("needs driver capability %s; driver %q (%s %s) lacks it", nc.op, caps.Name, caps.Family, caps.Backend))
					}
				}
				nc.run(n)
			}})
		}
	}
	return Suite{Name: name, Cases: cases, Requires: []string{"selector"}}
}

// RunNet binds every networking case to t as a subtest, each loop built on a
// selector from f. Run it with -race.
func RunNet(t *testing.T, f Factory, cfg ...NetConfig) {
	t.Helper()
	var nc NetConfig
	if len(cfg) > 0 {
		nc = cfg[0]
	}
	RunSuite(t, NetSuite(nc), f)
}

// ncase is a networking case before it is bound to a configuration.
type ncase struct {
	name  string
	needs string // a selector capability, see Case.Needs
	op    string // an optional driver operation (sdk.Cap*) the case needs
	alone bool   // see Case.Alone
	run   func(n *nt)
}

// nt is what a networking case body works with.
type nt struct {
	*C
	cfg NetConfig
}

// netRunLimit bounds one run of a case's main coroutine; past it the
// coroutine is cancelled and the case fails. It is below DefaultTimeout so
// that a stalled transfer is reported as the rule it broke, not as a hang,
// and far above what a working selector needs (an 8 MiB echo through a
// plugin process under -race takes a few seconds).
const netRunLimit = 20 * time.Second

// netSettle is how long a case waits for a condition that a working loop
// reaches in milliseconds; it is below netRunLimit so the condition, not the
// watchdog, is named when it fails.
const netSettle = 15 * time.Second

// newDriver builds the I/O driver of one loop (see NetConfig.Driver),
// closed when the case ends if nothing closed it before.
func (n *nt) newDriver() sdk.Driver {
	var d sdk.Driver
	if n.cfg.Driver != nil {
		var err error
		if d, err = n.cfg.Driver(); err != nil {
			n.Errorf("driver: %v", err)
			n.FailNow()
		}
	} else {
		d = readiness.New(n.loopSelector())
	}
	n.Cleanup(func() { d.Close() })
	return d
}

// without is a driver with some optional operations taken away, so that a
// case can drive the kernel's answer to their absence (the read-and-send
// fallback of sendfile) on any driver.
type without struct {
	sdk.Driver
	ops []string
}

func (d without) Capabilities() sdk.DriverCapabilities {
	c := d.Driver.Capabilities()
	c.Ops = slices.DeleteFunc(slices.Clone(c.Ops), func(op string) bool { return slices.Contains(d.ops, op) })
	return c
}

// newLoop builds a loop on a driver from newDriver, without the optional
// operations listed. It is closed when the case ends; its log is attached
// to the case when the case failed.
func (n *nt) newLoop(lacking ...string) *kernel.Loop {
	drv := n.newDriver()
	if len(lacking) > 0 {
		drv = without{drv, lacking}
	}
	buf := &syncBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "loopkernel", Output: buf, Level: hclog.Debug})
	opts := []kernel.Option{kernel.WithLogger(logger)}
	if n.cfg.Debug {
		opts = append(opts, kernel.WithDebug(true))
	}
	l := kernel.NewOnDriver(drv, opts...)
	n.Cleanup(func() {
		if err := l.Close(); err != nil && !errors.Is(err, kernel.ErrClosed) {
			n.Errorf("closing the loop at the end of the case: %v", err)
		}
		n.mu.Lock()
		failed := n.failed
		n.mu.Unlock()
		if s := buf.String(); s != "" && failed {
			const keep = 16 << 10
			if len(s) > keep {
				s = "...\n" + s[len(s)-keep:]
			}
			n.Logf("loop log:\n%s", s)
		}
	})
	return l
}

// run runs body as a task on l until it returns, under a watchdog that
// cancels it after netRunLimit. An error from body fails the case; what
// names the step, for the failure message.
func (n *nt) run(l *kernel.Loop, what string, body func(co *kernel.Co) error) {
	_, err := runT(n, l, what, func(co *kernel.Co) (struct{}, error) { return struct{}{}, body(co) })
	if err != nil {
		n.Errorf("rule: %s: %v", what, err)
		n.FailNow()
	}
}

// runT runs body as a task on l under the same watchdog as run and returns
// the task's outcome, so cases can check the errors operations return.
// Only the watchdog firing (or a task that cannot be created) fails the
// case here.
func runT[T any](n *nt, l *kernel.Loop, what string, body func(co *kernel.Co) (T, error)) (T, error) {
	v, err := testkit.Go(l, netRunLimit, body)
	if errors.Is(err, testkit.ErrNotFinished) {
		n.Errorf("rule: %s: %v", what, err)
		n.FailNow()
	}
	return v, err
}

// waitUntil sleeps on the loop in short steps until cond holds, and fails
// with the rule named by what if it does not within netSettle. It returns
// the sleep's error (a cancellation) for the body to return.
func (n *nt) waitUntil(co *kernel.Co, what string, cond func() bool) error {
	err := testkit.Until(co, netSettle, cond)
	if err != nil && !errors.Is(err, kernel.ErrCancelled) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return err
}

// settleTurns gives the loop a few turns (and a few milliseconds), for
// checks that something did NOT happen; they can only be made weaker by a
// slow machine, never flaky.
func settleTurns(co *kernel.Co, turns int) error {
	for range turns {
		if err := co.Sleep(time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// tempDir is a directory removed when the case ends.
func (n *nt) tempDir() string {
	dir, err := os.MkdirTemp("", "conformance-net-")
	n.fixture("temp dir", err)
	n.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
