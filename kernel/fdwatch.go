package kernel

import (
	"fmt"

	"github.com/loopkernel/loopkernel/sdk"
)

// fdReg is one descriptor the loop watches: its reader and writer callbacks
// and the interest currently registered with the selector under the token
// (slot, gen).
type fdReg struct {
	fd       int
	gen      uint32
	interest sdk.Events
	reader   *handle
	writer   *handle
}

// fdTable maps descriptors to registration slots. Slots are reused with a new
// generation, so an event the selector reports for a slot's previous
// occupant carries an old token and is dropped (see dispatchIO).
type fdTable struct {
	byFD  fdIndex
	slots []fdReg
	free  []uint32
}

// init sizes the index for the descriptors a process starts with, so the
// first registrations do not grow it one doubling at a time.
func (t *fdTable) init() { t.byFD.dense = make([]uint32, 64) }

func (t *fdTable) reset() {
	t.byFD = fdIndex{}
	t.slots, t.free = nil, nil
}

// denseFDLimit bounds fdIndex's slice: 64 Ki descriptors, 256 KiB at most.
const denseFDLimit = 1 << 16

// fdIndex maps a descriptor to its slot. Descriptors are small and dense
// (the kernel hands out the lowest free number), so a slice indexed by
// descriptor costs 4 bytes per watched descriptor where a map costs about 36
// (issue 4: 10 k idle connections in 40 MB); it is also a cheaper lookup on
// every pause and resume. A descriptor at or past denseFDLimit (dup2 to a
// high number, a raised RLIMIT_NOFILE) goes to a map, so one outlier cannot
// make the slice huge.
type fdIndex struct {
	dense  []uint32 // slot+1; 0 means not watched
	sparse map[int]uint32
}

func (x *fdIndex) get(fd int) (uint32, bool) {
	if fd < denseFDLimit {
		if fd < len(x.dense) && x.dense[fd] != 0 {
			return x.dense[fd] - 1, true
		}
		return 0, false
	}
	slot, ok := x.sparse[fd]
	return slot, ok
}

func (x *fdIndex) set(fd int, slot uint32) {
	if fd >= denseFDLimit {
		if x.sparse == nil {
			x.sparse = make(map[int]uint32)
		}
		x.sparse[fd] = slot
		return
	}
	if fd >= len(x.dense) {
		n := min(max(fd+1, 2*len(x.dense), 64), denseFDLimit)
		x.dense = append(x.dense, make([]uint32, n-len(x.dense))...)
	}
	x.dense[fd] = slot + 1
}

func (x *fdIndex) del(fd int) {
	if fd >= denseFDLimit {
		delete(x.sparse, fd)
	} else if fd < len(x.dense) {
		x.dense[fd] = 0
	}
}

func (t *fdTable) token(slot uint32) sdk.Token { return sdk.MakeToken(slot, t.slots[slot].gen) }

// AddReader watches fd for read readiness and calls fn each time it is
// readable (level-triggered: until the data is consumed or the reader
// removed). A second AddReader for the same fd replaces the callback.
func (l *Loop) AddReader(fd int, fn func()) error { return l.addWatch(fd, sdk.Read, fn) }

// AddWriter watches fd for write readiness, as AddReader.
func (l *Loop) AddWriter(fd int, fn func()) error { return l.addWatch(fd, sdk.Write, fn) }

// RemoveReader stops watching fd for reading; it reports whether fd was
// being watched.
func (l *Loop) RemoveReader(fd int) (bool, error) { return l.removeWatch(fd, sdk.Read) }

// RemoveWriter stops watching fd for writing; it reports whether fd was
// being watched.
func (l *Loop) RemoveWriter(fd int) (bool, error) { return l.removeWatch(fd, sdk.Write) }

func (l *Loop) addWatch(fd int, ev sdk.Events, fn func()) error {
	op := "add reader"
	if ev == sdk.Write {
		op = "add writer"
	}
	if err := l.checkUsable(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if fd < 0 {
		return fmt.Errorf("%s: fd %d: %w", op, fd, ErrInvalidFD)
	}
	if fn == nil {
		return fmt.Errorf("%s: fd %d: nil callback", op, fd)
	}
	h := &handle{loop: l, gen: 1, index: -1, fn: fn, persistent: true}
	t := &l.fds
	slot, ok := t.byFD.get(fd)
	if !ok {
		slot = l.allocSlot(fd)
		if err := l.sel.Register(fd, t.token(slot), ev); err != nil {
			l.freeSlot(slot)
			return fmt.Errorf("%s: fd %d: %w", op, fd, err)
		}
		t.byFD.set(fd, slot)
	} else if r := &t.slots[slot]; r.interest&ev == 0 {
		if err := l.sel.Modify(t.token(slot), r.interest|ev); err != nil {
			return fmt.Errorf("%s: fd %d: %w", op, fd, err)
		}
	}
	r := &t.slots[slot]
	r.interest |= ev
	old := &r.reader
	if ev == sdk.Write {
		old = &r.writer
	}
	if *old != nil {
		(*old).cancelled = true
	}
	*old = h
	return nil
}

func (l *Loop) removeWatch(fd int, ev sdk.Events) (bool, error) {
	if l.closed.Load() {
		return false, nil // Close dropped every watch; as asyncio, report none
	}
	if err := l.checkUsable(); err != nil {
		return false, fmt.Errorf("remove watch: %w", err)
	}
	t := &l.fds
	slot, ok := t.byFD.get(fd)
	if !ok || t.slots[slot].interest&ev == 0 {
		return false, nil
	}
	r := &t.slots[slot]
	cb := &r.reader
	if ev == sdk.Write {
		cb = &r.writer
	}
	(*cb).cancelled = true // it may already sit in the ready queue
	*cb = nil
	r.interest &^= ev
	var err error
	if r.interest == 0 {
		err = l.sel.Unregister(t.token(slot))
		t.byFD.del(fd)
		l.freeSlot(slot)
	} else {
		err = l.sel.Modify(t.token(slot), r.interest)
	}
	if err != nil {
		return true, fmt.Errorf("remove watch: fd %d: %w", fd, err)
	}
	return true, nil
}

func (l *Loop) allocSlot(fd int) uint32 {
	t := &l.fds
	var slot uint32
	if n := len(t.free); n > 0 {
		slot = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		slot = uint32(len(t.slots))
		t.slots = append(t.slots, fdReg{})
	}
	r := &t.slots[slot]
	r.fd, r.gen, r.interest = fd, r.gen+1, 0
	return slot
}

func (l *Loop) freeSlot(slot uint32) {
	r := &l.fds.slots[slot]
	r.fd, r.interest, r.reader, r.writer = -1, 0, nil, nil
	l.fds.free = append(l.fds.free, slot)
}

// dispatchIO queues the callbacks of ready descriptors. Errors and hang-ups
// wake both directions, as asyncio's selectors do, so the callback discovers
// the condition through its own read or write.
func (l *Loop) dispatchIO(events []sdk.Event) {
	t := &l.fds
	for _, e := range events {
		slot := e.Token.Slot()
		if int(slot) >= len(t.slots) {
			continue
		}
		r := &t.slots[slot]
		if r.gen != e.Token.Gen() || r.interest == 0 {
			continue // stale: the registration is gone
		}
		if e.Events&(sdk.Read|sdk.Error|sdk.Hangup) != 0 && r.reader != nil {
			l.ready.push(r.reader)
		}
		if e.Events&(sdk.Write|sdk.Error|sdk.Hangup) != 0 && r.writer != nil {
			l.ready.push(r.writer)
		}
	}
}
