package gonet

import (
	"sync"
	"time"
)

// deadline is one direction's deadline (SetReadDeadline, SetWriteDeadline):
// a channel closed when it passes, replaced whenever the deadline moves so
// a waiter always selects on the current one.
type deadline struct {
	mu      sync.Mutex
	timer   *time.Timer
	expired chan struct{}
}

func newDeadline() deadline { return deadline{expired: make(chan struct{})} }

// set arms the deadline at t; the zero time disarms it. A time in the past
// expires it at once, as net.Conn's deadlines do.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	stale := false
	if d.timer != nil {
		// A timer that already fired has closed (or is closing) the
		// channel it captured: that channel is spent.
		stale = !d.timer.Stop()
		d.timer = nil
	} else {
		stale = isClosed(d.expired)
	}
	if stale {
		d.expired = make(chan struct{})
	}
	if t.IsZero() {
		return
	}
	if wait := time.Until(t); wait > 0 {
		ch := d.expired
		d.timer = time.AfterFunc(wait, func() { close(ch) })
		return
	}
	close(d.expired)
}

// channel returns the channel closed when the current deadline passes.
func (d *deadline) channel() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expired
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// signal wakes one waiter on a one-slot wake-up channel without blocking.
// A waiter that wakes and leaves something for the next one signals again,
// so every waiter is woken in turn without a channel per wait.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
