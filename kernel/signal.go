package kernel

import (
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

// maxSignal bounds valid signal numbers (Linux's NSIG is 65).
const maxSignal = 65

// signalState holds a loop's signal handlers. The Go runtime delivers a
// signal to a per-signal channel; a forwarding goroutine sets the signal's
// bit in pending and wakes the loop, which runs the handler as an ordinary
// callback in its next iteration. A burst of one signal coalesces into one
// call, as with C signal handlers.
type signalState struct {
	pending  atomic.Uint64 // bit n-1 for signal n
	handlers map[syscall.Signal]*sigReg
}

type sigReg struct {
	h    *handle
	ch   chan os.Signal
	done chan struct{}
}

func checkSignal(sig syscall.Signal) error {
	if sig <= 0 || sig >= maxSignal {
		return fmt.Errorf("signal %d out of range: %w", int(sig), ErrInvalidSignal)
	}
	if sig == syscall.SIGKILL || sig == syscall.SIGSTOP {
		return fmt.Errorf("signal %d (%v) cannot be caught: %w", int(sig), sig, ErrInvalidSignal)
	}
	return nil
}

// AddSignalHandler makes fn run as a loop callback whenever sig arrives; a
// signal wakes a loop blocked in its selector. It replaces any handler the
// loop already has for sig. Out-of-range signals and SIGKILL/SIGSTOP fail
// with ErrInvalidSignal.
func (l *Loop) AddSignalHandler(sig syscall.Signal, fn func()) error {
	if err := checkSignal(sig); err != nil {
		return fmt.Errorf("add signal handler: %w", err)
	}
	if err := l.checkUsable(); err != nil {
		return fmt.Errorf("add signal handler: %w", err)
	}
	if fn == nil {
		return fmt.Errorf("add signal handler: signal %d: nil callback", int(sig))
	}
	s := &l.sig
	if s.handlers == nil {
		s.handlers = make(map[syscall.Signal]*sigReg)
	}
	h := &handle{loop: l, gen: 1, index: -1, fn: fn, persistent: true}
	if old := s.handlers[sig]; old != nil {
		old.h.cancelled = true
		old.h = h
		return nil
	}
	reg := &sigReg{h: h, ch: make(chan os.Signal, 1), done: make(chan struct{})}
	s.handlers[sig] = reg
	bit := uint64(1) << (uint(sig) - 1)
	go func() {
		for {
			select {
			case <-reg.ch:
				s.pending.Or(bit)
				l.wake()
			case <-reg.done:
				return
			}
		}
	}()
	signal.Notify(reg.ch, sig)
	return nil
}

// RemoveSignalHandler removes the handler for sig and restores the signal's
// default disposition; it reports whether there was one.
func (l *Loop) RemoveSignalHandler(sig syscall.Signal) (bool, error) {
	if err := checkSignal(sig); err != nil {
		return false, fmt.Errorf("remove signal handler: %w", err)
	}
	if l.closed.Load() {
		return false, nil // Close removed every handler; as asyncio, report none
	}
	if err := l.checkUsable(); err != nil {
		return false, fmt.Errorf("remove signal handler: %w", err)
	}
	return l.sig.remove(sig), nil
}

func (s *signalState) remove(sig syscall.Signal) bool {
	reg := s.handlers[sig]
	if reg == nil {
		return false
	}
	signal.Stop(reg.ch)
	close(reg.done)
	reg.h.cancelled = true
	delete(s.handlers, sig)
	s.pending.And(^(uint64(1) << (uint(sig) - 1)))
	return true
}

func (s *signalState) removeAll() {
	for sig := range s.handlers {
		s.remove(sig)
	}
}

// dispatch queues the handlers of signals that arrived since the last
// iteration.
func (s *signalState) dispatch(l *Loop) {
	if s.pending.Load() == 0 {
		return
	}
	bits := s.pending.Swap(0)
	for bits != 0 {
		n := 0
		for bits&(1<<n) == 0 {
			n++
		}
		bits &^= 1 << n
		if reg := s.handlers[syscall.Signal(n+1)]; reg != nil {
			l.ready.push(reg.h)
		}
	}
}
