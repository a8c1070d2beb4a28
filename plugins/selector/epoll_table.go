package selector

import "github.com/loopkernel/loopkernel/sdk"

// epollTable holds the epoll selector's registrations by token and by
// descriptor.
//
// Why slices: a host issues tokens from a dense slot table (sdk.MakeToken:
// the kernel reuses the lowest free slots) and descriptors are small dense
// numbers, so an entry indexed by slot and one indexed by descriptor cost 16
// and 8 bytes where two maps cost about 90 per registration — for 10 k idle
// connections (issue 4) close to a megabyte, in the host and again in a
// plugin process — and the lookup Wait makes for every event is an index,
// not a hash. Why the maps behind them: the seam does not promise dense
// tokens, so a token whose slot lies far past the slice, or whose slot
// another generation still holds, goes to a map instead of growing the
// slice or evicting; likewise a descriptor far past the slice.
type epollTable struct {
	bySlot     []epollSlot // indexed by token slot
	bySlotMore map[sdk.Token]epollReg
	byFD       []sdk.Token // indexed by descriptor: token+1, 0 when free
	byFDMore   map[int]sdk.Token
}

// epollSlot is a registration in bySlot; fd1 is fd+1, 0 when free.
type epollSlot struct {
	tok      sdk.Token
	fd1      int32
	interest sdk.Events
}

// denseRoom says whether index i may live in a slice of length n: it may
// grow the slice to at most about twice its size (plus a start of 64), so
// a dense run of indexes fills it and a stray large one does not blow it up.
func denseRoom(i, n int) bool { return i >= 0 && i < max(2*n, 64) && i < 1<<31-1 }

func grownTo[T any](s []T, i int) []T {
	if i < len(s) {
		return s
	}
	n := max(i+1, 2*len(s), 64)
	return append(s, make([]T, n-len(s))...)
}

// get returns the registration of tok.
func (t *epollTable) get(tok sdk.Token) (epollReg, bool) {
	if i := int(tok.Slot()); i < len(t.bySlot) {
		if e := &t.bySlot[i]; e.fd1 != 0 && e.tok == tok {
			return epollReg{fd: int(e.fd1) - 1, interest: e.interest}, true
		}
	}
	if t.bySlotMore == nil { // the common case: every token is dense
		return epollReg{}, false
	}
	r, ok := t.bySlotMore[tok]
	return r, ok
}

// put adds tok or changes its registration.
func (t *epollTable) put(tok sdk.Token, r epollReg) {
	i := int(tok.Slot())
	if i < len(t.bySlot) {
		if e := &t.bySlot[i]; e.fd1 != 0 && e.tok == tok {
			e.interest = r.interest
			e.fd1 = int32(r.fd + 1)
			return
		}
	}
	if _, ok := t.bySlotMore[tok]; !ok && r.fd < 1<<31-1 && denseRoom(i, len(t.bySlot)) &&
		(i >= len(t.bySlot) || t.bySlot[i].fd1 == 0) {
		t.bySlot = grownTo(t.bySlot, i)
		t.bySlot[i] = epollSlot{tok: tok, fd1: int32(r.fd + 1), interest: r.interest}
		return
	}
	if t.bySlotMore == nil {
		t.bySlotMore = make(map[sdk.Token]epollReg)
	}
	t.bySlotMore[tok] = r
}

func (t *epollTable) del(tok sdk.Token) {
	if i := int(tok.Slot()); i < len(t.bySlot) {
		if e := &t.bySlot[i]; e.fd1 != 0 && e.tok == tok {
			*e = epollSlot{}
			return
		}
	}
	delete(t.bySlotMore, tok)
}

// fdToken returns the token fd is registered under.
func (t *epollTable) fdToken(fd int) (sdk.Token, bool) {
	if fd >= 0 && fd < len(t.byFD) {
		if v := t.byFD[fd]; v != 0 {
			return v - 1, true
		}
	}
	// The slice may have grown past a descriptor that went to the map.
	if t.byFDMore == nil {
		return 0, false
	}
	tok, ok := t.byFDMore[fd]
	return tok, ok
}

// setFD records that fd is registered as tok (never wakeToken, so tok+1
// is not 0).
func (t *epollTable) setFD(fd int, tok sdk.Token) {
	if fd < len(t.byFD) || denseRoom(fd, len(t.byFD)) {
		t.byFD = grownTo(t.byFD, fd)
		t.byFD[fd] = tok + 1
		return
	}
	if t.byFDMore == nil {
		t.byFDMore = make(map[int]sdk.Token)
	}
	t.byFDMore[fd] = tok
}

func (t *epollTable) delFD(fd int) {
	if fd >= 0 && fd < len(t.byFD) && t.byFD[fd] != 0 {
		t.byFD[fd] = 0
		return
	}
	delete(t.byFDMore, fd)
}
