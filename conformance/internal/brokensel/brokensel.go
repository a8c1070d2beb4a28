// Package brokensel is a deliberately broken sdk.Selector, kept so that the
// conformance suite can prove it catches real faults and names the rule each
// one breaks. It wraps a working selector and breaks two rules:
//
//   - it drops every second event it would report, so level-triggered
//     readiness goes missing on alternate Waits ("level-triggered read
//     readiness is reported on every Wait until drained");
//   - its Wake does nothing but return nil, so a blocked Wait is never
//     interrupted ("Wake from another goroutine interrupts an indefinite
//     Wait").
//
// Everything else is passed through, so the other cases still pass and a
// report shows exactly these failures. It is a real selector so that the same
// back-end can also be served out of process and certified there.
package brokensel

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// Name is what Capabilities().Name reports.
const Name = "broken"

// New returns a broken selector wrapping the bundled epoll selector.
func New() (sdk.Selector, error) {
	inner, err := selector.NewEpoll()
	if err != nil {
		return nil, fmt.Errorf("brokensel: %w", err)
	}
	return Wrap(inner), nil
}

// Wrap returns a broken selector around inner, which it owns from then on.
func Wrap(inner sdk.Selector) sdk.Selector { return &broken{Selector: inner} }

type broken struct {
	sdk.Selector
	seen   uint64      // events the inner selector has reported so far
	closed atomic.Bool // so that Wake still honours the ErrClosed rule
}

// Wait drops every second event the inner selector reports.
func (b *broken) Wait(events []sdk.Event, timeout time.Duration) (int, error) {
	n, err := b.Selector.Wait(events, timeout)
	kept := 0
	for _, ev := range events[:n] {
		b.seen++
		if b.seen%2 == 0 {
			continue
		}
		events[kept] = ev
		kept++
	}
	return kept, err
}

// Wake forgets the wake-up (but still fails after Close, so that only the
// two advertised rules break).
func (b *broken) Wake() error {
	if b.closed.Load() {
		return fmt.Errorf("brokensel: wake: %w", sdk.ErrSelectorClosed)
	}
	return nil
}

func (b *broken) Close() error {
	b.closed.Store(true)
	return b.Selector.Close()
}

func (b *broken) Capabilities() sdk.Capabilities {
	caps := b.Selector.Capabilities()
	caps.Name = Name
	return caps
}
