// Package readiness is the I/O seam (sdk.Driver) over any sdk.Selector, in
// either placement: it performs each operation itself, with non-blocking
// system calls, when the selector reports the descriptor ready.
//
// It owns the registration table (descriptors to slots, with slot and
// generation tokens so that late events are dropped), the dispatch of
// readiness to the operation armed on each side of a descriptor, and the
// raw system calls, written so that the per-event path allocates nothing.
// What it keeps of the measured design: one read per readiness event; a
// write tried first by the caller (TryWrite) and then one sendmsg of every
// queued buffer per writable event; registrations changed only when the
// interest really changes (a write resubmitted from its completion keeps
// the descriptor armed). It imports sdk and never the kernel.
package readiness

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

const (
	// eventBatch is how many readiness events one Wait collects at most.
	eventBatch = 256
	// maxIovecs is how many buffers one sendmsg hands the kernel.
	maxIovecs = 64
)

// Driver is the readiness driver of one loop. Use it from the loop's
// goroutine only, except Wake.
type Driver struct {
	sel    sdk.Selector
	events []sdk.Event
	tab    table
	closed bool

	// deferred holds completions known at submission (a connect that
	// finished at once, a shutdown, a cancellation): the seam never runs a
	// callback inside the call that submitted it, so they wait for the next
	// Poll, which then does not block.
	deferred []func()

	// Scratch shared by every descriptor: only one operation runs at a time.
	iov  [maxIovecs]unix.Iovec
	msg  unix.Msghdr
	from sdk.SockAddr // a sender or peer, valid during the callback it is passed to

	caps    sdk.DriverCapabilities
	hasCaps bool
}

// New returns a driver over sel, which it owns from now on and closes in
// Close.
func New(sel sdk.Selector) *Driver {
	d := &Driver{sel: sel, events: make([]sdk.Event, eventBatch)}
	d.tab.init()
	return d
}

// Selector returns the selector under the driver, for diagnostics.
func (d *Driver) Selector() sdk.Selector { return d.sel }

// Open implements sdk.Driver.
func (d *Driver) Open(fd int) (sdk.FD, error) {
	if d.closed {
		return nil, fmt.Errorf("open fd %d: %w", fd, sdk.ErrSelectorClosed)
	}
	if fd < 0 {
		return nil, fmt.Errorf("open fd %d: %w", fd, unix.EBADF)
	}
	if _, ok := d.tab.byFD.get(fd); ok {
		return nil, fmt.Errorf("open fd %d: %w", fd, sdk.ErrExists)
	}
	return d.tab.alloc(d, fd), nil
}

// Poll implements sdk.Driver: deferred completions first, then the
// callbacks of the operations whose descriptors the selector reports
// ready. Errors and hang-ups wake both directions, as asyncio's selectors
// do, so the operation discovers the condition through its own system call.
func (d *Driver) Poll(ready []func(), timeout time.Duration) (int, error) {
	if d.closed {
		return 0, sdk.ErrSelectorClosed
	}
	n := 0
	if len(d.deferred) > 0 {
		n = copy(ready, d.deferred)
		rest := copy(d.deferred, d.deferred[n:])
		clear(d.deferred[rest:])
		d.deferred = d.deferred[:rest]
		timeout = 0
	}
	room := min((len(ready)-n)/2, len(d.events))
	if room == 0 {
		return n, nil
	}
	k, err := d.sel.Wait(d.events[:room], timeout)
	if err != nil {
		return n, err
	}
	tab := &d.tab
	for _, e := range d.events[:k] {
		slot := e.Token.Slot()
		if int(slot) >= len(tab.slots) {
			continue
		}
		f := tab.slots[slot]
		if !f.open || !f.registered || f.gen != e.Token.Gen() {
			continue // stale: the registration is gone
		}
		if e.Events&(sdk.Read|sdk.Error|sdk.Hangup) != 0 && f.rop != opNone && !f.queuedR {
			f.queuedR = true
			ready[n] = f.onR
			n++
		}
		if e.Events&(sdk.Write|sdk.Error|sdk.Hangup) != 0 && f.wop != opNone && !f.queuedW {
			f.queuedW = true
			ready[n] = f.onW
			n++
		}
	}
	return n, nil
}

// Wake implements sdk.Driver.
func (d *Driver) Wake() error { return d.sel.Wake() }

// Capabilities implements sdk.Driver. The readiness driver supports every
// optional operation: watching is what a selector does, sendfile(2) works
// on readiness, and re-arming a multishot operation costs it nothing.
func (d *Driver) Capabilities() sdk.DriverCapabilities {
	if !d.hasCaps {
		sc := d.sel.Capabilities()
		d.caps = sdk.DriverCapabilities{
			Name: "readiness", Family: "selector", Backend: sc.Name,
			Ops:      []string{sdk.CapWatch, sdk.CapSendfile, sdk.CapMultishot},
			Selector: sc,
		}
		d.hasCaps = true
	}
	return d.caps
}

// Close implements sdk.Driver: every open descriptor is closed (its
// pending operations cancelled), then the selector.
func (d *Driver) Close() error {
	if d.closed {
		return nil
	}
	// The loop is going away: nothing will run the cancellations, and the
	// selector's registrations go with the selector.
	for _, f := range d.tab.slots {
		f.detach()
	}
	d.closed = true
	clear(d.deferred)
	d.deferred = nil
	d.tab = table{}
	return d.sel.Close()
}

// later queues a completion for the next Poll.
func (d *Driver) later(fn func()) { d.deferred = append(d.deferred, fn) }

var _ sdk.Driver = (*Driver)(nil)
