package dataplane

import "github.com/loopkernel/loopkernel/internal/yield"

// yielder makes a goroutine driving the data plane pass through the Go
// scheduler now and then: both ends are goroutines that never park, and
// internal/yield says why that costs a two-core VM half its CPU per
// exchange unless they yield. One copy of the heuristic serves the data
// plane and the loop.
type yielder struct{ t yield.Ticker }

// tick is called once per exchange; it reports whether it yielded.
func (y *yielder) tick() bool { return y.t.TickClock() }
