package proactorplane

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Geometry of version 1. Both sides use exactly these: the header repeats
// them so that a mismatch (a plugin built against another layout) is
// refused at the hello rather than misread later.
const (
	Version = 1

	HeaderSize = 4096
	SQEntries  = 1024
	SQEntrySz  = 64
	CQEntries  = 4096
	CQEntrySz  = 32
	BufCount   = 256
	BufSize    = 16 << 10
	ArenaSize  = 8 << 20

	SQOff    = HeaderSize
	CQOff    = SQOff + SQEntries*SQEntrySz
	BufOff   = CQOff + CQEntries*CQEntrySz
	ArenaOff = BufOff + BufCount*BufSize
	// Size is the memfd's size: everything above, page aligned.
	Size = ArenaOff + ArenaSize

	// BufGroup is the provided-buffer group the plugin registers the
	// read buffers under, and the only one a READ may name.
	BufGroup = 1
)

// Magic opens the header: "LKPROPL1".
var Magic = [8]byte{'L', 'K', 'P', 'R', 'O', 'P', 'L', '1'}

// Offsets of the header's fields. Each index that one side stores and the
// other loads has a 64-byte line to itself, so that the two processes do
// not bounce a cache line between them on every entry.
const (
	offMagic          = 0
	offVersion        = 8
	offHeaderSize     = 12
	offSQEntries      = 16
	offSQEntrySz      = 20
	offCQEntries      = 24
	offCQEntrySz      = 28
	offBufCount       = 32
	offBufSize        = 36
	offArenaSize      = 40
	offSQOff          = 48
	offCQOff          = 56
	offBufOff         = 64
	offArenaOff       = 72
	offTotal          = 80
	offSQHead         = 128 // plugin stores
	offSQTail         = 192 // host stores
	offCQHead         = 256 // host stores
	offCQTail         = 320 // plugin stores
	offPluginSleeping = 384 // plugin stores 1, host swaps to 0 when ringing
	offHostSleeping   = 448 // host stores 1, plugin swaps to 0 when ringing
	offHeartbeat      = 512 // plugin increments
	offAcked          = 576 // plugin stores: submissions fully handled (a pass of its loop ended)
	offAckWanted      = 640 // host stores: the acked index it waits for
)

// ErrLayout: a header or memfd that does not describe version 1's layout.
var ErrLayout = errors.New("proactor plane: layout mismatch")

// WriteHeader fills a fresh header (the host does it once, before sealing).
func WriteHeader(h []byte) {
	le := binary.LittleEndian
	copy(h[offMagic:], Magic[:])
	le.PutUint32(h[offVersion:], Version)
	le.PutUint32(h[offHeaderSize:], HeaderSize)
	le.PutUint32(h[offSQEntries:], SQEntries)
	le.PutUint32(h[offSQEntrySz:], SQEntrySz)
	le.PutUint32(h[offCQEntries:], CQEntries)
	le.PutUint32(h[offCQEntrySz:], CQEntrySz)
	le.PutUint32(h[offBufCount:], BufCount)
	le.PutUint32(h[offBufSize:], BufSize)
	le.PutUint32(h[offArenaSize:], ArenaSize)
	le.PutUint64(h[offSQOff:], SQOff)
	le.PutUint64(h[offCQOff:], CQOff)
	le.PutUint64(h[offBufOff:], BufOff)
	le.PutUint64(h[offArenaOff:], ArenaOff)
	le.PutUint64(h[offTotal:], Size)
}

// CheckHeader verifies that h (the first bytes of a mapping of size bytes)
// describes version 1's layout, field by field, and says which field
// differs. The indices (heads, tails) are not checked: a plugin that maps
// a plane re-reads them under the ring protocol.
func CheckHeader(h []byte, size int64) error {
	if len(h) < HeaderSize {
		return fmt.Errorf("%w: header of %d bytes, want %d", ErrLayout, len(h), HeaderSize)
	}
	if [8]byte(h[:8]) != Magic {
		return fmt.Errorf("%w: magic %q, want %q", ErrLayout, h[:8], Magic[:])
	}
	le := binary.LittleEndian
	for _, f := range []struct {
		name string
		off  int
		want uint64
		wide bool
	}{
		{"version", offVersion, Version, false},
		{"header size", offHeaderSize, HeaderSize, false},
		{"sq entries", offSQEntries, SQEntries, false},
		{"sq entry size", offSQEntrySz, SQEntrySz, false},
		{"cq entries", offCQEntries, CQEntries, false},
		{"cq entry size", offCQEntrySz, CQEntrySz, false},
		{"buffer count", offBufCount, BufCount, false},
		{"buffer size", offBufSize, BufSize, false},
		{"arena size", offArenaSize, ArenaSize, false},
		{"sq offset", offSQOff, SQOff, true},
		{"cq offset", offCQOff, CQOff, true},
		{"buffer offset", offBufOff, BufOff, true},
		{"arena offset", offArenaOff, ArenaOff, true},
		{"total size", offTotal, Size, true},
	} {
		var got uint64
		if f.wide {
			got = le.Uint64(h[f.off:])
		} else {
			got = uint64(le.Uint32(h[f.off:]))
		}
		if got != f.want {
			return fmt.Errorf("%w: %s is %d, want %d", ErrLayout, f.name, got, f.want)
		}
	}
	for _, r := range [][2]int{{44, 48}, {88, offSQHead}} {
		for _, c := range h[r[0]:r[1]] {
			if c != 0 {
				return fmt.Errorf("%w: reserved header bytes %d-%d not zero", ErrLayout, r[0], r[1])
			}
		}
	}
	if size != Size {
		return fmt.Errorf("%w: the memfd holds %d bytes, want %d", ErrLayout, size, Size)
	}
	return nil
}
