package selector

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/sdk"
)

// epollTable against two maps under random operations: dense slots and
// descriptors, slots another generation holds, slots and descriptors far
// past the slices (which go to the maps), and slices that later grow past
// entries already in the maps.
func TestEpollTableModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var tab epollTable
	regs := map[sdk.Token]epollReg{}
	fds := map[int]sdk.Token{}
	slot := func() uint32 {
		switch rng.IntN(10) {
		case 0:
			return uint32(1<<20 + rng.IntN(1000)) // far past the slice
		default:
			return uint32(rng.IntN(600)) // dense, growing past early outliers
		}
	}
	fdOf := func() int {
		if rng.IntN(10) == 0 {
			return 1<<20 + rng.IntN(1000)
		}
		return rng.IntN(600)
	}
	check := func(step int) {
		for tok, want := range regs {
			got, ok := tab.get(tok)
			require.True(t, ok, "step %d: token %v lost", step, tok)
			require.Equal(t, want, got, "step %d: token %v", step, tok)
		}
		for fd, want := range fds {
			got, ok := tab.fdToken(fd)
			require.True(t, ok, "step %d: fd %d lost", step, fd)
			require.Equal(t, want, got, "step %d: fd %d", step, fd)
		}
	}
	var live []sdk.Token
	for step := range 20000 {
		switch op := rng.IntN(10); {
		case op < 5: // register
			tok := sdk.MakeToken(slot(), uint32(rng.IntN(4)))
			fd := fdOf()
			if _, ok := regs[tok]; ok {
				continue
			}
			if _, ok := fds[fd]; ok {
				continue
			}
			_, gotTok := tab.get(tok)
			_, gotFD := tab.fdToken(fd)
			require.False(t, gotTok, "step %d: unregistered token %v found", step, tok)
			require.False(t, gotFD, "step %d: unregistered fd %d found", step, fd)
			r := epollReg{fd: fd, interest: sdk.Events(rng.IntN(4))}
			tab.put(tok, r)
			tab.setFD(fd, tok)
			regs[tok], fds[fd] = r, tok
			live = append(live, tok)
		case op < 7 && len(live) > 0: // modify
			tok := live[rng.IntN(len(live))]
			r := regs[tok]
			r.interest = sdk.Events(rng.IntN(4))
			tab.put(tok, r)
			regs[tok] = r
		case len(live) > 0: // unregister
			i := rng.IntN(len(live))
			tok := live[i]
			live[i] = live[len(live)-1]
			live = live[:len(live)-1]
			r := regs[tok]
			tab.del(tok)
			tab.delFD(r.fd)
			delete(regs, tok)
			delete(fds, r.fd)
			_, ok := tab.get(tok)
			require.False(t, ok, "step %d: unregistered token %v still found", step, tok)
			_, ok = tab.fdToken(r.fd)
			require.False(t, ok, "step %d: unregistered fd %d still found", step, r.fd)
		}
		if step%500 == 0 {
			check(step)
		}
	}
	check(-1)
	require.Less(t, len(tab.bySlot), 1<<12, "outlying slots must not grow the slice")
	require.Less(t, len(tab.byFD), 1<<12, "outlying descriptors must not grow the slice")
	require.NotEmpty(t, tab.bySlotMore, "the model must exercise the map side")
}
