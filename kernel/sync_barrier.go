package kernel

import "fmt"

type barrierState uint8

const (
	barrierFilling barrierState = iota
	barrierDraining
	barrierResetting
	barrierBroken
)

// Barrier lets a fixed number of coroutines wait until all of them have
// arrived (asyncio.Barrier): each Wait blocks until the last party calls
// Wait, then all return together and the barrier fills again. Abort breaks
// it and Reset breaks the round in progress; the coroutines waiting then,
// and those that wait on an aborted barrier, get ErrBrokenBarrier.
type Barrier struct {
	cond    Condition
	parties int
	count   int
	state   barrierState
}

// NewBarrier returns a barrier for parties coroutines (at least one).
func NewBarrier(parties int) (*Barrier, error) {
	if parties < 1 {
		return nil, fmt.Errorf("barrier: parties %d must be > 0: %w", parties, ErrInvalidState)
	}
	return &Barrier{parties: parties}, nil
}

// Wait blocks until every party has called Wait and returns this caller's
// arrival index, 0 to Parties-1 (the last to arrive gets Parties-1).
func (b *Barrier) Wait(co *Co) (int, error) {
	if err := b.cond.Acquire(co); err != nil {
		return 0, err
	}
	defer b.cond.Release()
	// Block while the barrier drains or resets.
	if err := b.cond.WaitFor(co, func() bool {
		return b.state != barrierDraining && b.state != barrierResetting
	}); err != nil {
		return 0, err
	}
	if b.state == barrierBroken {
		return 0, fmt.Errorf("barrier wait: aborted: %w", ErrBrokenBarrier)
	}
	index := b.count
	b.count++
	defer b.exit()
	if index+1 == b.parties {
		b.state = barrierDraining
		b.cond.NotifyAll()
		return index, nil
	}
	if err := b.cond.WaitFor(co, func() bool { return b.state != barrierFilling }); err != nil {
		return 0, err
	}
	if b.state == barrierBroken || b.state == barrierResetting {
		return 0, fmt.Errorf("barrier wait: aborted or reset: %w", ErrBrokenBarrier)
	}
	return index, nil
}

// exit is how a party leaves: the last one out refills the barrier.
func (b *Barrier) exit() {
	b.count--
	if b.count == 0 {
		if b.state == barrierResetting || b.state == barrierDraining {
			b.state = barrierFilling
		}
		b.cond.NotifyAll()
	}
}

// Reset returns the barrier to its empty state; coroutines waiting on it
// get ErrBrokenBarrier.
func (b *Barrier) Reset(co *Co) error {
	if err := b.cond.Acquire(co); err != nil {
		return err
	}
	defer b.cond.Release()
	if b.count > 0 {
		b.state = barrierResetting
	} else {
		b.state = barrierFilling
	}
	return b.cond.NotifyAll()
}

// Abort breaks the barrier: current and future Waits fail with
// ErrBrokenBarrier until Reset.
func (b *Barrier) Abort(co *Co) error {
	if err := b.cond.Acquire(co); err != nil {
		return err
	}
	defer b.cond.Release()
	b.state = barrierBroken
	return b.cond.NotifyAll()
}

// Parties is the number of coroutines the barrier waits for.
func (b *Barrier) Parties() int { return b.parties }

// NWaiting is how many coroutines wait on the barrier while it fills.
func (b *Barrier) NWaiting() int {
	if b.state == barrierFilling {
		return b.count
	}
	return 0
}

// Broken reports whether the barrier is aborted.
func (b *Barrier) Broken() bool { return b.state == barrierBroken }
