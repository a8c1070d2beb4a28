package selector

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/sdk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The contract itself is checked by conformance (TestBundledSelectors); these
// tests cover what is particular to each implementation.

func socketpair(t *testing.T) (int, int) {
	t.Helper()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

func TestNewByName(t *testing.T) {
	for _, b := range sdk.Selectors.All() {
		s, err := sdk.Selectors.New(b.Name)
		require.NoError(t, err)
		assert.Equal(t, b.Name, s.Capabilities().Name)
		require.NoError(t, s.Close())
	}
	_, err := sdk.Selectors.New("kqueue")
	require.ErrorIs(t, err, sdk.ErrUnknownBackend)
	assert.Contains(t, err.Error(), `"kqueue"`)
	assert.Contains(t, err.Error(), "[epoll poll]")
}

func TestCapabilities(t *testing.T) {
	e, err := NewEpoll()
	require.NoError(t, err)
	defer e.Close()
	p, err := NewPoll()
	require.NoError(t, err)
	defer p.Close()
	assert.Equal(t, sdk.Capabilities{Name: "epoll"}, e.Capabilities())
	assert.Equal(t, sdk.Capabilities{Name: "poll", RegularFiles: true}, p.Capabilities())
}

func TestEpollRefusesRegularFileWithEPERM(t *testing.T) {
	s, err := NewEpoll()
	require.NoError(t, err)
	defer s.Close()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	require.NoError(t, err)
	defer f.Close()
	for _, interest := range []sdk.Events{sdk.Read, 0} {
		err = s.Register(int(f.Fd()), sdk.MakeToken(1, 1), interest)
		require.Error(t, err)
		assert.True(t, errors.Is(err, unix.EPERM), "interest %v: %v", interest, err)
		assert.Contains(t, err.Error(), "epoll_ctl")
	}
}

func TestEpollReservesWakeToken(t *testing.T) {
	s, err := NewEpoll()
	require.NoError(t, err)
	defer s.Close()
	a, _ := socketpair(t)
	err = s.Register(a, wakeToken, sdk.Read)
	assert.ErrorIs(t, err, unix.EINVAL)
	require.NoError(t, s.Register(a, wakeToken-1, sdk.Read), "the token next to the reserved one is ordinary")
}

// A descriptor closed behind poll's back is reported as an error (POLLNVAL)
// rather than silently dropped, so the owner notices its mistake.
func TestPollReportsClosedDescriptorAsError(t *testing.T) {
	s, err := NewPoll()
	require.NoError(t, err)
	defer s.Close()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	defer unix.Close(p[1])
	tok := sdk.MakeToken(1, 1)
	require.NoError(t, s.Register(p[0], tok, sdk.Read))
	require.NoError(t, unix.Close(p[0]))
	buf := make([]sdk.Event, 4)
	n, err := s.Wait(buf, time.Second)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	assert.Equal(t, sdk.Event{Token: tok, Events: sdk.Error}, buf[0])
}

// Swap-remove must keep both index maps pointing at the right slots.
func TestPollSwapRemoveKeepsIndexes(t *testing.T) {
	sel, err := NewPoll()
	require.NoError(t, err)
	defer sel.Close()
	s := sel.(*pollSelector)
	fds := make(map[sdk.Token]int)
	for i := 0; i < 8; i++ {
		a, _ := socketpair(t)
		tok := sdk.MakeToken(uint32(i), 1)
		require.NoError(t, s.Register(a, tok, sdk.Read))
		fds[tok] = a
	}
	for _, i := range []uint32{0, 7, 3, 4} {
		tok := sdk.MakeToken(i, 1)
		require.NoError(t, s.Unregister(tok))
		delete(fds, tok)
	}
	require.Len(t, s.pfds, len(fds)+1)
	require.Len(t, s.regs, len(fds)+1)
	require.Len(t, s.byTok, len(fds))
	require.Len(t, s.byFd, len(fds))
	for tok, fd := range fds {
		i := s.byTok[tok]
		assert.Equal(t, i, s.byFd[fd], "token %v", tok)
		assert.Equal(t, tok, s.regs[i].tok)
		assert.Equal(t, int32(fd), s.pfds[i].Fd)
	}
	assert.Equal(t, int32(s.w.fd), s.pfds[0].Fd, "slot 0 stays the wake eventfd")
}

// A burst of Wake calls costs one eventfd write: the counter holds 1.
func TestWakeCoalescesWrites(t *testing.T) {
	for _, b := range sdk.Selectors.All() {
		t.Run(b.Name, func(t *testing.T) {
			sel, err := b.New()
			require.NoError(t, err)
			defer sel.Close()
			var w *waker
			switch s := sel.(type) {
			case *epollSelector:
				w = &s.w
			case *pollSelector:
				w = &s.w
			}
			for i := 0; i < 1000; i++ {
				require.NoError(t, sel.Wake())
			}
			var buf [8]byte
			n, err := unix.Read(w.fd, buf[:])
			require.NoError(t, err)
			require.Equal(t, 8, n)
			assert.Equal(t, [8]byte{1}, buf, "eventfd counter after 1000 Wakes (little-endian)")
		})
	}
}

func TestMsTimeout(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{-1, -1},
		{-time.Hour, -1},
		{0, 0},
		{1, 1},
		{time.Millisecond, 1},
		{time.Millisecond + 1, 2},
		{1900 * time.Microsecond, 2},
		{50 * time.Millisecond, 50},
		{1 << 62, 1<<31 - 1},
	} {
		assert.Equal(t, tc.want, msTimeout(tc.d), "%v", tc.d)
	}
}

// TestWaitDoesNotAllocate is the hot-path rule as a test: Wait with ready
// events must not allocate.
func TestWaitDoesNotAllocate(t *testing.T) {
	for _, b := range sdk.Selectors.All() {
		t.Run(b.Name, func(t *testing.T) {
			s, buf := readySelector(t, b.New, 16)
			allocs := testing.AllocsPerRun(200, func() {
				if n, err := s.Wait(buf, 0); err != nil || n != 16 {
					t.Fatalf("Wait = %d, %v; want 16 events", n, err)
				}
			})
			assert.Zero(t, allocs, "allocations per Wait")
		})
	}
}
