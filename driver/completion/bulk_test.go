package completion_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// 8 MiB written with Write (resubmitting what a completion did not take)
// arrive whole and in order through ReadStart, with the writer's buffers
// queued as many slices, as a transport's write queue offers them.
func TestBulkWriteRead(t *testing.T) {
	d := newDriver(t)
	a, b := socketpair(t)
	fa, err := d.Open(a)
	require.NoError(t, err)
	fb, err := d.Open(b)
	require.NoError(t, err)
	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i * 13 / 7)
	}
	var got []byte
	rbuf := make([]byte, 256<<10)
	require.NoError(t, fb.ReadStart(func(int) []byte { return rbuf }, func(data []byte, err error) {
		require.NoError(t, err)
		got = append(got, data...)
	}))
	off := 0
	var offered [][]byte
	var wrote func(n int, err error)
	submit := func() {
		offered = offered[:0]
		for p := off; p < len(want) && len(offered) < 100; p += 16 << 10 {
			offered = append(offered, want[p:min(p+16<<10, len(want))])
		}
		require.NoError(t, fa.Write(offered, wrote))
	}
	wrote = func(n int, err error) {
		require.NoError(t, err)
		off += n
		if off < len(want) {
			submit()
		}
	}
	submit()
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		step(t, d, 50*time.Millisecond)
	}
	t.Logf("off %d got %d", off, len(got))
	require.Equal(t, len(want), len(got))
	require.True(t, bytes.Equal(want, got))
	_ = unix.EAGAIN
}
