package proactorplane

// Arena hands out pieces of the write arena (host side): size classes of
// 256 bytes to 256 KiB, powers of two, carved from the arena on first use
// and reused through a free list per class, never split or merged. Writes
// on a busy server come in a few sizes, so the classes settle quickly and
// Alloc and Free cost a slice push or pop. A write larger than the largest
// class, or one that finds no room, is cut to what fits (a write may
// complete partly; the caller resubmits the rest).
type Arena struct {
	bump int
	free [arenaClasses][]uint32
}

const (
	minClassShift = 8 // 256 B
	arenaClasses  = 11
	// MaxPiece is the largest piece Alloc gives.
	MaxPiece = 1 << (minClassShift + arenaClasses - 1)
)

func classOf(n int) int {
	c := 0
	for (1 << (minClassShift + c)) < n {
		c++
	}
	return c
}

// Alloc returns the offset of a piece of at least min(n, MaxPiece) bytes,
// or of the largest smaller one free, and its size; ok is false when not
// even a 256-byte piece is left.
func (a *Arena) Alloc(n int) (off uint32, size int, ok bool) {
	if n > MaxPiece {
		n = MaxPiece
	}
	for c := classOf(max(n, 1)); c >= 0; c-- {
		size = 1 << (minClassShift + c)
		if l := len(a.free[c]); l > 0 {
			off = a.free[c][l-1]
			a.free[c] = a.free[c][:l-1]
			return off, size, true
		}
		if a.bump+size <= ArenaSize {
			off = uint32(a.bump)
			a.bump += size
			return off, size, true
		}
	}
	return 0, 0, false
}

// Free gives back a piece Alloc returned with its size.
func (a *Arena) Free(off uint32, size int) {
	c := classOf(size)
	a.free[c] = append(a.free[c], off)
}

// Reset forgets every piece (a new plane).
func (a *Arena) Reset() {
	a.bump = 0
	for i := range a.free {
		a.free[i] = a.free[i][:0]
	}
}
