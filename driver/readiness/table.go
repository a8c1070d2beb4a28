package readiness

// denseFDLimit bounds fdIndex's slice: 64 Ki descriptors, 256 KiB at most.
const denseFDLimit = 1 << 16

// fdIndex maps a descriptor to its slot. Descriptors are small and dense
// (the kernel hands out the lowest free number), so a slice indexed by
// descriptor costs 4 bytes per open descriptor where a map costs about 36
// (issue 4: 10 k idle connections in 40 MB); it is also a cheaper lookup. A
// descriptor at or past denseFDLimit (dup2 to a high number, a raised
// RLIMIT_NOFILE) goes to a map, so one outlier cannot make the slice huge.
type fdIndex struct {
	dense  []uint32 // slot+1; 0 means not open
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

// table is the registration table: one file per open descriptor, in slots
// that are reused. A slot's generation is bumped every time its descriptor
// is registered with the selector anew, and the token (slot, generation)
// names the registration, so an event the selector reports for an earlier
// registration of the slot is recognised as stale and dropped.
type table struct {
	byFD  fdIndex
	slots []*file
	free  []uint32
}

func (t *table) init() { t.byFD.dense = make([]uint32, 64) }

// alloc takes a free slot (or grows the table) for fd.
func (t *table) alloc(d *Driver, fd int) *file {
	var f *file
	if n := len(t.free); n > 0 {
		f = t.slots[t.free[n-1]]
		t.free = t.free[:n-1]
	} else {
		f = &file{d: d, slot: uint32(len(t.slots))}
		f.onR, f.onW = f.readable, f.writable // made once per slot
		t.slots = append(t.slots, f)
	}
	f.reset(fd)
	t.byFD.set(fd, f.slot)
	return f
}

// release returns f's slot once no callback of it is queued: a callback
// already handed to the kernel must find its own (closed) file, not a new
// descriptor in the same slot.
func (t *table) release(f *file) {
	if f.queuedR || f.queuedW || f.freed {
		return
	}
	f.freed = true
	t.free = append(t.free, f.slot)
}
