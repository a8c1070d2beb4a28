//go:build !race

package plugin

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// The supervision wrapped around the data plane (watchdog timer, wake flag,
// closed check) must not allocate per loop iteration.
func TestWaitDoesNotAllocate(t *testing.T) {
	sel := launch(t, Spec{Name: "testpoll"})
	r, w := pipe(t)
	_, err := unix.Write(w, []byte("x"))
	require.NoError(t, err)
	tok := sdk.MakeToken(1, 1)
	require.NoError(t, sel.Register(r, tok, sdk.Read))
	evs := make([]sdk.Event, 4)
	allocs := testing.AllocsPerRun(200, func() {
		if n, err := sel.Wait(evs, 0); err != nil || n != 1 {
			t.Fatalf("Wait = %d, %v", n, err)
		}
	})
	assert.Zero(t, allocs)
}

// BenchmarkWait is one loop iteration through the supervised plugin: a
// data-plane exchange reporting one ready descriptor.
func BenchmarkWait(b *testing.B) {
	sel := launch(b, Spec{Name: "testpoll"})
	r, w := pipe(b)
	if _, err := unix.Write(w, []byte("x")); err != nil {
		b.Fatal(err)
	}
	if err := sel.Register(r, sdk.MakeToken(1, 1), sdk.Read); err != nil {
		b.Fatal(err)
	}
	evs := make([]sdk.Event, 4)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n, err := sel.Wait(evs, 0); err != nil || n != 1 {
			b.Fatalf("Wait = %d, %v", n, err)
		}
	}
}
