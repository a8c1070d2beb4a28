package kernel

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// fdIndex against a map, over dense descriptors, the boundary of the dense
// slice, and outliers that must go to the sparse map without growing the
// slice.
func TestFDIndex(t *testing.T) {
	var x fdIndex
	model := map[int]uint32{}
	fds := []int{0, 3, 4, 63, 64, 65, 1000, 9999, denseFDLimit - 1, denseFDLimit, denseFDLimit + 1, 1 << 24}
	for i, fd := range fds {
		x.set(fd, uint32(i))
		model[fd] = uint32(i)
	}
	require.LessOrEqual(t, len(x.dense), denseFDLimit, "an outlier must not grow the slice past its limit")
	check := func() {
		t.Helper()
		for _, fd := range append(fds, 1, 2, 66, 5000, denseFDLimit+2, 1<<25) {
			slot, ok := x.get(fd)
			want, wok := model[fd]
			require.Equal(t, wok, ok, "fd %d", fd)
			require.Equal(t, want, slot, "fd %d", fd)
		}
	}
	check()
	// Slot 0 is a real slot, not "absent".
	x.set(7, 0)
	model[7] = 0
	check()
	for _, fd := range []int{3, 64, denseFDLimit, 1 << 24, 7, 12345} {
		x.del(fd)
		delete(model, fd)
	}
	check()
	x.set(64, 99)
	model[64] = 99
	check()
}

// A fresh index answers "not watched" for everything.
func TestFDIndexZero(t *testing.T) {
	var x fdIndex
	for _, fd := range []int{0, 1, 100, denseFDLimit, 1 << 30} {
		_, ok := x.get(fd)
		require.False(t, ok)
		x.del(fd) // no panic on an absent descriptor
	}
}
