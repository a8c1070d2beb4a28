package kernel

import (
	"errors"
	"fmt"
)

// Lock is a mutual-exclusion lock for coroutines on one loop (asyncio.Lock).
// The zero value is an unlocked lock; it binds to the loop of its first
// waiter. It is not for goroutines: every call must be made on the loop.
//
// Waiters are served first come, first served: Release wakes the waiter at
// the head, and an Acquire that arrives meanwhile queues behind it rather
// than barging in. A waiter cancelled after it was woken passes the wake-up
// on, so a cancellation never strands the lock.
type Lock struct {
	locked  bool
	waiters waitq
}

// Acquire takes the lock, waiting for it if it is held. It returns a
// *CancelledError, without the lock, if the task is cancelled while waiting.
func (m *Lock) Acquire(co *Co) error {
	if !m.locked && !m.waiters.live() {
		m.locked = true
		return nil
	}
	st, err := m.waiters.wait(co)
	if err != nil {
		if st != pending && !m.locked {
			// We may have been the one woken: wake the next in line.
			m.waiters.wakeFirst()
		}
		return err
	}
	m.locked = true
	return nil
}

// Release unlocks the lock and wakes the first waiter. Releasing a lock
// that is not held returns ErrNotAcquired.
func (m *Lock) Release() error {
	if !m.locked {
		return fmt.Errorf("release: %w", ErrNotAcquired)
	}
	m.locked = false
	m.waiters.wakeFirst()
	return nil
}

// Locked reports whether the lock is held.
func (m *Lock) Locked() bool { return m.locked }

// Event is a flag coroutines can wait for (asyncio.Event). The zero value is
// a clear event.
type Event struct {
	set     bool
	waiters waitq
}

// Wait returns at once if the event is set, else when Set is called.
func (e *Event) Wait(co *Co) error {
	if e.set {
		return nil
	}
	_, err := e.waiters.wait(co)
	return err
}

// Set sets the event and wakes every waiter.
func (e *Event) Set() {
	if !e.set {
		e.set = true
		e.waiters.wakeN(-1)
	}
}

// Clear resets the event: later Waits block until the next Set.
func (e *Event) Clear() { e.set = false }

// IsSet reports whether the event is set.
func (e *Event) IsSet() bool { return e.set }

// Semaphore limits how many coroutines hold it at once (asyncio.Semaphore):
// Acquire takes one unit of its value, waiting while it is zero, and
// Release gives one back. Waiters are served in order; one cancelled after
// it was woken gives its unit back and wakes the next.
type Semaphore struct {
	value   int
	bound   int // > 0 for a BoundedSemaphore
	waiters waitq
}

// NewSemaphore returns a semaphore with value units; a negative value is an
// error (asyncio's ValueError).
func NewSemaphore(value int) (*Semaphore, error) {
	if value < 0 {
		return nil, fmt.Errorf("semaphore: initial value %d must be >= 0: %w", value, ErrInvalidState)
	}
	return &Semaphore{value: value}, nil
}

// NewBoundedSemaphore is NewSemaphore for a semaphore whose Release fails
// with ErrTooManyReleases rather than raising its value above the initial
// one (asyncio.BoundedSemaphore).
func NewBoundedSemaphore(value int) (*Semaphore, error) {
	s, err := NewSemaphore(value)
	if err != nil {
		return nil, err
	}
	s.bound = value
	if value == 0 {
		s.bound = -1 // bounded at zero: every Release is one too many
	}
	return s, nil
}

// Locked reports whether an Acquire would wait.
func (s *Semaphore) Locked() bool { return s.value == 0 || s.waiters.live() }

// Acquire takes one unit, waiting for one if none is free.
func (s *Semaphore) Acquire(co *Co) error {
	if !s.Locked() {
		s.value--
		return nil
	}
	st, err := s.waiters.wait(co)
	if err != nil && st == finished {
		// Woken (given a unit) but cancelled before running: give it back.
		s.value++
	}
	// Waiters that arrived meanwhile queued behind us: wake as many as
	// there are units.
	for s.value > 0 && s.wakeNext() {
	}
	return err
}

func (s *Semaphore) wakeNext() bool {
	for _, w := range s.waiters.waiters() {
		if !w.done() {
			s.value--
			w.finish(nil)
			return true
		}
	}
	return false
}

// Release gives one unit back and wakes the next waiter.
func (s *Semaphore) Release() error {
	if s.bound != 0 {
		limit := max(s.bound, 0)
		if s.value >= limit {
			return fmt.Errorf("release: bounded semaphore: %w", ErrTooManyReleases)
		}
	}
	s.value++
	s.wakeNext()
	return nil
}

// Value is the number of free units.
func (s *Semaphore) Value() int { return s.value }

// Condition lets coroutines wait until notified, holding a lock around the
// state they check (asyncio.Condition). NewCondition(nil), or the zero
// value, uses a lock of its own.
type Condition struct {
	lock    *Lock
	own     Lock
	waiters waitq
}

// NewCondition returns a condition over lock (a new one if nil).
func NewCondition(lock *Lock) *Condition {
	return &Condition{lock: lock}
}

func (c *Condition) l() *Lock {
	if c.lock == nil {
		c.lock = &c.own
	}
	return c.lock
}

// Acquire takes the condition's lock.
func (c *Condition) Acquire(co *Co) error { return c.l().Acquire(co) }

// Release releases the condition's lock.
func (c *Condition) Release() error { return c.l().Release() }

// Locked reports whether the condition's lock is held.
func (c *Condition) Locked() bool { return c.l().locked }

// Wait releases the lock, waits until notified and takes the lock again
// before it returns, in every case: when the task is cancelled while it
// waits, Wait still reacquires the lock (ignoring further cancellations
// meanwhile) and then returns the *CancelledError, and a notification it
// may have received is passed on to another waiter (which may make that
// wake-up spurious, as the condition-variable contract allows). Waiting
// without holding the lock returns ErrNotAcquired.
func (c *Condition) Wait(co *Co) error {
	lk := c.l()
	if !lk.locked {
		return fmt.Errorf("condition wait: %w", ErrNotAcquired)
	}
	lk.Release()
	_, err := c.waiters.wait(co)
	for {
		e := lk.Acquire(co)
		if e == nil {
			break
		}
		if !errors.Is(e, ErrCancelled) {
			// The loop closed under us: nothing can be reacquired.
			return e
		}
		err = e
	}
	if err != nil {
		c.waiters.wakeN(1)
		return err
	}
	return nil
}

// WaitFor waits until pred returns true, checking it first and after each
// notification; the lock must be held.
func (c *Condition) WaitFor(co *Co, pred func() bool) error {
	for !pred() {
		if err := c.Wait(co); err != nil {
			return err
		}
	}
	return nil
}

// Notify wakes up to n waiters; the lock must be held.
func (c *Condition) Notify(n int) error {
	if !c.l().locked {
		return fmt.Errorf("condition notify: %w", ErrNotAcquired)
	}
	if n > 0 {
		c.waiters.wakeN(n)
	}
	return nil
}

// NotifyAll wakes every waiter; the lock must be held.
func (c *Condition) NotifyAll() error {
	if !c.l().locked {
		return fmt.Errorf("condition notify: %w", ErrNotAcquired)
	}
	c.waiters.wakeN(-1)
	return nil
}
