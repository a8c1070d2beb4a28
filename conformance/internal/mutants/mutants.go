// Package mutants is the conformance suite's own certificate: selector
// back-ends that each carry one planted fault, written with the SDK as any
// plugin author would write a selector (an sdk.Selector wrapping the bundled
// epoll selector, served out of process by plugin.Serve like any other).
// The mutation test in this package certifies every one of them in both
// placements and requires each to fail, on the rule it names, quickly. A
// new fault class gets a mutant here.
//
// Faults the SDK makes impossible, or harmless, in one placement have no
// mutant; docs/conformance.md lists them.
//
// It must not be imported outside the conformance tree: these back-ends are
// broken on purpose.
package mutants

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// Mutant is one broken back-end and the verdict it must get.
type Mutant struct {
	// Name is the back-end's name (it is registered as "mutant-"+Name by
	// the mutation test).
	Name string
	// Fault says what is planted.
	Fault string
	// Rule is the text of the rule a certification must name in a failure
	// ("rule: "+Rule), in both placements.
	Rule string
	// New builds one selector with the fault.
	New func() (sdk.Selector, error)
	// PluginRule, if set, replaces Rule out of process, where the SDK's
	// supervision catches the fault first (and names its own rule).
	PluginRule string
	// InProcessOnly, if set, says why the fault cannot be expressed out of
	// process (the SDK's plugin side does the job for the selector there),
	// so the mutant is certified in process only.
	InProcessOnly string
}

// All returns every mutant.
func All() []Mutant {
	return []Mutant{
		{
			Name:  "sleeps-3x-timeout",
			Fault: "a Wait that times out sleeps three times the timeout it was given",
			Rule:  "Wait returns promptly once its timeout has passed",
			New:   wrap(func(m *mutant) { m.wait = m.sleepThrice }),
		},
		{
			Name:  "delays-events",
			Fault: "every Wait that has events delays them by 100 ms",
			Rule:  "readiness that arrives during a Wait ends it promptly",
			New:   wrap(func(m *mutant) { m.wait = m.delayEvents }),
		},
		{
			Name:  "crashes",
			Fault: "every 50th Wait panics (out of process: the plugin dies)",
			Rule:  "the back-end does not crash",
			New:   wrap(func(m *mutant) { m.wait = m.crashEvery50 }),
		},
		{
			Name:  "wrong-tokens",
			Fault: "every event is reported under the token registered just before its own",
			Rule:  "every event belongs to a registration that is ready",
			New:   wrap(func(m *mutant) { m.wait = m.shiftTokens }),
		},
		{
			Name:  "invents-read",
			Fault: "every Wait also reports Read for every registration interested in it",
			Rule:  "every event belongs to a registration that is ready",
			New:   wrap(func(m *mutant) { m.wait = m.inventReads }),
		},
		{
			Name:  "invents-write",
			Fault: "a registration interested in Write is always reported writable",
			Rule:  "every event belongs to a registration that is ready",
			New:   wrap(func(m *mutant) { m.wait = m.inventWrites }),
		},
		{
			Name:  "ignores-timeouts",
			Fault: "every Wait blocks until an event or a Wake, whatever its timeout",
			Rule:  "Wait returns once its timeout has passed",
			// Out of process the health check kills the plugin first.
			PluginRule: "the back-end answers every call within its deadline (health check)",
			New:        wrap(func(m *mutant) { m.wait = m.noTimeout }),
		},
		{
			Name:  "rounds-timeout-down",
			Fault: "a timeout is truncated to whole milliseconds",
			Rule:  "Wait does not return before its timeout",
			New:   wrap(func(m *mutant) { m.wait = m.truncateTimeout }),
		},
		{
			Name:  "returns-early",
			Fault: "a Wait with nothing ready returns after half its timeout",
			Rule:  "Wait does not return before its timeout",
			New:   wrap(func(m *mutant) { m.wait = m.halfTimeout }),
		},
		{
			Name:  "drops-events",
			Fault: "every second event is dropped",
			Rule:  "every ready registration is reported in one batch",
			New:   wrap(func(m *mutant) { m.wait = m.dropEverySecond }),
		},
		{
			Name:  "duplicates-events",
			Fault: "the first event of a batch is reported twice",
			Rule:  "one event per ready token per Wait, conditions merged",
			New:   wrap(func(m *mutant) { m.wait = m.duplicateFirst }),
		},
		{
			Name:  "loses-wake",
			Fault: "Wake does nothing (and says it succeeded)",
			Rule:  "Wake from another goroutine interrupts an indefinite Wait",
			New:   wrap(func(m *mutant) { m.wake = func() error { return m.closedErr() } }),
			InProcessOnly: "out of process a Wake is a frame on the data plane, whose socket plugin.Serve " +
				"registers in the selector: the frame ends the plugin's Wait without the selector's Wake being called",
		},
		{
			Name:  "ignores-modify",
			Fault: "Modify of a registered token succeeds and changes nothing",
			Rule:  "Modify replaces the interest set",
			New: wrap(func(m *mutant) {
				m.modify = func(tok sdk.Token, interest sdk.Events) error {
					if err := m.closedErr(); err != nil {
						return err
					}
					m.mu.Lock()
					_, known := m.regs[tok]
					m.mu.Unlock()
					if !known {
						return m.Selector.Modify(tok, interest) // the ErrNotRegistered rule still holds
					}
					return nil
				}
			}),
		},
		{
			Name:  "hangs",
			Fault: "after 100 Waits, Wait blocks for ever (deaf to Wake and readiness)",
			Rule:  "Wait returns once its timeout has passed",
			// The health check kills the hung plugin before the checker's
			// patience runs out.
			PluginRule: "the back-end answers every call within its deadline (health check)",
			New:        wrap(func(m *mutant) { m.wait = m.hangAfter100 }),
		},
	}
}

// mutant is the bundled epoll selector with one method replaced. It keeps
// the registrations it was given (in order) for the faults that need them.
type mutant struct {
	sdk.Selector
	wait   func(events []sdk.Event, timeout time.Duration) (int, error)
	wake   func() error
	modify func(tok sdk.Token, interest sdk.Events) error

	mu     sync.Mutex
	order  []sdk.Token
	regs   map[sdk.Token]sdk.Events
	waits  atomic.Int64
	drop   uint64
	closed atomic.Bool
}

// wrap returns a factory for a mutant that plant configures.
func wrap(plant func(m *mutant)) func() (sdk.Selector, error) {
	return func() (sdk.Selector, error) {
		inner, err := selector.NewEpoll()
		if err != nil {
			return nil, fmt.Errorf("mutants: %w", err)
		}
		m := &mutant{Selector: inner, regs: map[sdk.Token]sdk.Events{}}
		m.wait, m.wake, m.modify = inner.Wait, inner.Wake, m.modifyInner
		plant(m)
		return m, nil
	}
}

func (m *mutant) Register(fd int, tok sdk.Token, interest sdk.Events) error {
	if err := m.Selector.Register(fd, tok, interest); err != nil {
		return err
	}
	m.mu.Lock()
	m.order = append(m.order, tok)
	m.regs[tok] = interest
	m.mu.Unlock()
	return nil
}

func (m *mutant) modifyInner(tok sdk.Token, interest sdk.Events) error {
	if err := m.Selector.Modify(tok, interest); err != nil {
		return err
	}
	m.mu.Lock()
	m.regs[tok] = interest
	m.mu.Unlock()
	return nil
}

func (m *mutant) Modify(tok sdk.Token, interest sdk.Events) error { return m.modify(tok, interest) }

func (m *mutant) Unregister(tok sdk.Token) error {
	err := m.Selector.Unregister(tok)
	m.mu.Lock()
	m.order = slices.DeleteFunc(m.order, func(t sdk.Token) bool { return t == tok })
	delete(m.regs, tok)
	m.mu.Unlock()
	return err
}

func (m *mutant) Wait(events []sdk.Event, timeout time.Duration) (int, error) {
	m.waits.Add(1)
	return m.wait(events, timeout)
}

func (m *mutant) Wake() error { return m.wake() }

func (m *mutant) Close() error {
	m.closed.Store(true)
	return m.Selector.Close()
}

func (m *mutant) Capabilities() sdk.Capabilities {
	c := m.Selector.Capabilities()
	c.Name = "mutant"
	return c
}

// closedErr keeps the rule the mutant does not break: calls after Close
// fail with ErrSelectorClosed.
func (m *mutant) closedErr() error {
	if m.closed.Load() {
		return fmt.Errorf("mutant: %w", sdk.ErrSelectorClosed)
	}
	return nil
}

func (m *mutant) sleepThrice(events []sdk.Event, timeout time.Duration) (int, error) {
	n, err := m.Selector.Wait(events, timeout)
	if n == 0 && err == nil && timeout > 0 {
		time.Sleep(2 * timeout)
	}
	return n, err
}

func (m *mutant) delayEvents(events []sdk.Event, timeout time.Duration) (int, error) {
	n, err := m.Selector.Wait(events, timeout)
	if n > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	return n, err
}

func (m *mutant) crashEvery50(events []sdk.Event, timeout time.Duration) (int, error) {
	if m.waits.Load()%50 == 0 {
		panic("mutant: planted crash on the 50th Wait")
	}
	return m.Selector.Wait(events, timeout)
}

func (m *mutant) shiftTokens(events []sdk.Event, timeout time.Duration) (int, error) {
	n, err := m.Selector.Wait(events, timeout)
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range events[:n] {
		if k := slices.Index(m.order, events[i].Token); k >= 0 {
			events[i].Token = m.order[(k+len(m.order)-1)%len(m.order)]
		}
	}
	return n, err
}

// invent adds cond to every registration interested in it, after what the
// inner selector reported.
func (m *mutant) invent(cond sdk.Events, events []sdk.Event, timeout time.Duration) (int, error) {
	m.mu.Lock()
	want := false
	for _, ev := range m.regs {
		want = want || ev&cond != 0
	}
	m.mu.Unlock()
	if want {
		timeout = 0 // something is "ready"
	}
	n, err := m.Selector.Wait(events, timeout)
	if err != nil {
		return n, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, tok := range m.order {
		if m.regs[tok]&cond == 0 {
			continue
		}
		i := slices.IndexFunc(events[:n], func(e sdk.Event) bool { return e.Token == tok })
		switch {
		case i >= 0:
			events[i].Events |= cond
		case n < len(events):
			events[n] = sdk.Event{Token: tok, Events: cond}
			n++
		}
	}
	return n, nil
}

func (m *mutant) inventReads(events []sdk.Event, timeout time.Duration) (int, error) {
	return m.invent(sdk.Read, events, timeout)
}

func (m *mutant) inventWrites(events []sdk.Event, timeout time.Duration) (int, error) {
	return m.invent(sdk.Write, events, timeout)
}

func (m *mutant) noTimeout(events []sdk.Event, _ time.Duration) (int, error) {
	return m.Selector.Wait(events, -1)
}

func (m *mutant) truncateTimeout(events []sdk.Event, timeout time.Duration) (int, error) {
	if timeout > 0 {
		timeout = timeout.Truncate(time.Millisecond)
	}
	return m.Selector.Wait(events, timeout)
}

func (m *mutant) halfTimeout(events []sdk.Event, timeout time.Duration) (int, error) {
	if timeout > 0 {
		timeout /= 2
	}
	return m.Selector.Wait(events, timeout)
}

func (m *mutant) dropEverySecond(events []sdk.Event, timeout time.Duration) (int, error) {
	n, err := m.Selector.Wait(events, timeout)
	kept := 0
	for _, ev := range events[:n] {
		m.drop++
		if m.drop%2 == 0 {
			continue
		}
		events[kept] = ev
		kept++
	}
	return kept, err
}

func (m *mutant) duplicateFirst(events []sdk.Event, timeout time.Duration) (int, error) {
	n, err := m.Selector.Wait(events, timeout)
	if n > 0 && n < len(events) {
		events[n] = events[0]
		n++
	}
	return n, err
}

func (m *mutant) hangAfter100(events []sdk.Event, timeout time.Duration) (int, error) {
	if m.waits.Load() > 100 {
		select {} // deaf to everything
	}
	return m.Selector.Wait(events, timeout)
}
