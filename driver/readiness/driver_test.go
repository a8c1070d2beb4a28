package readiness_test

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/driver/readiness"
	_ "github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// countingSel wraps a bundled selector, counts the registration changes the
// driver makes, and can report events of its own (to play a selector that
// reports late for a registration that has gone).
type countingSel struct {
	sdk.Selector
	registers, modifies, unregisters int
	inject                           []sdk.Event
	tokens                           []sdk.Token // every token registered, in order
}

func (s *countingSel) Register(fd int, tok sdk.Token, ev sdk.Events) error {
	s.registers++
	s.tokens = append(s.tokens, tok)
	return s.Selector.Register(fd, tok, ev)
}

func (s *countingSel) Modify(tok sdk.Token, ev sdk.Events) error {
	s.modifies++
	return s.Selector.Modify(tok, ev)
}

func (s *countingSel) Unregister(tok sdk.Token) error {
	s.unregisters++
	return s.Selector.Unregister(tok)
}

func (s *countingSel) Wait(ev []sdk.Event, timeout time.Duration) (int, error) {
	if len(s.inject) > 0 {
		n := copy(ev, s.inject)
		s.inject = s.inject[n:]
		return n, nil
	}
	return s.Selector.Wait(ev, timeout)
}

func newDriver(t *testing.T) (*readiness.Driver, *countingSel) {
	t.Helper()
	sel, err := sdk.Selectors.New("epoll")
	require.NoError(t, err)
	cs := &countingSel{Selector: sel}
	d := readiness.New(cs)
	t.Cleanup(func() { d.Close() })
	return d, cs
}

func socketpair(t *testing.T) (int, int) {
	t.Helper()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

// step polls once and runs what the poll returned, as the kernel's batch
// would; it returns how many callbacks ran.
func step(t *testing.T, d sdk.Driver, timeout time.Duration) int {
	t.Helper()
	var ready [64]func()
	n, err := d.Poll(ready[:], timeout)
	require.NoError(t, err)
	for _, cb := range ready[:n] {
		cb()
	}
	return n
}

// until steps the driver until cond holds, failing after a few seconds.
func until(t *testing.T, d sdk.Driver, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		step(t, d, 10*time.Millisecond)
	}
}

func TestReadStartStop(t *testing.T) {
	d, cs := newDriver(t)
	a, b := socketpair(t)
	f, err := d.Open(a)
	require.NoError(t, err)
	_, err = d.Open(a)
	require.ErrorIs(t, err, sdk.ErrExists, "a descriptor is open once per driver")

	buf := make([]byte, 64)
	var got []string
	var eof bool
	require.NoError(t, f.ReadStart(func(int) []byte { return buf }, func(data []byte, err error) {
		if err == io.EOF {
			eof = true
			return
		}
		require.NoError(t, err)
		require.Equal(t, &buf[0], &data[0], "the bytes are read into the buffer alloc gave")
		got = append(got, string(data))
	}))
	require.ErrorIs(t, f.ReadStart(nil, nil), sdk.ErrBusy, "one read-side operation at a time")
	require.Zero(t, step(t, d, 0), "nothing is delivered while nothing is readable")

	unix.Write(b, []byte("ping"))
	until(t, d, "the read", func() bool { return len(got) == 1 })
	require.Equal(t, []string{"ping"}, got)

	f.ReadStop()
	unix.Write(b, []byte("late"))
	require.Zero(t, step(t, d, 20*time.Millisecond), "a stopped read delivers nothing")
	require.Equal(t, 1, cs.registers)
	require.Equal(t, 1, cs.unregisters, "a descriptor with no interest left is unregistered")

	require.NoError(t, f.ReadStart(func(int) []byte { return buf }, func(data []byte, err error) {
		if err == io.EOF {
			eof = true
			return
		}
		got = append(got, string(data))
	}))
	unix.Shutdown(b, unix.SHUT_WR)
	until(t, d, "end of stream", func() bool { return eof })
	require.Equal(t, []string{"ping", "late"}, got)
}

// TestStopInsideAlloc: a read stopped from its buffer provider reads
// nothing, so the bytes stay for the next reader.
func TestStopInsideAlloc(t *testing.T) {
	d, _ := newDriver(t)
	a, b := socketpair(t)
	f, err := d.Open(a)
	require.NoError(t, err)
	called := false
	require.NoError(t, f.ReadStart(func(int) []byte { f.ReadStop(); return make([]byte, 8) }, func([]byte, error) { called = true }))
	unix.Write(b, []byte("x"))
	step(t, d, time.Second)
	require.False(t, called)
	n, err := f.TryRead(make([]byte, 8))
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

// TestPartialWriteResubmit: a write the socket cannot take whole completes
// with what went out; the rest, resubmitted from the completion, costs no
// registration change, and the interest is dropped only once everything is
// written.
func TestPartialWriteResubmit(t *testing.T) {
	d, cs := newDriver(t)
	a, b := socketpair(t)
	require.NoError(t, unix.SetsockoptInt(a, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096))
	f, err := d.Open(a)
	require.NoError(t, err)

	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	// Fill the socket first, so the write must wait.
	n, err := f.TryWrite([][]byte{data})
	require.NoError(t, err)
	require.Less(t, n, len(data))
	sent, completions := n, 0
	var werr error
	var done func(int, error)
	done = func(n int, err error) {
		completions++
		if err != nil {
			werr = err
			return
		}
		sent += n
		if sent < len(data) {
			// Split the rest over two buffers: a write takes several.
			rest := data[sent:]
			half := len(rest) / 2
			require.NoError(t, f.Write([][]byte{rest[:half], rest[half:]}, done))
		}
	}
	require.NoError(t, f.Write([][]byte{data[sent:]}, done))
	require.ErrorIs(t, f.Write(nil, done), sdk.ErrBusy, "one write-side operation at a time")
	require.Zero(t, completions, "a completion never runs inside the call that submitted it")

	var got []byte
	rbuf := make([]byte, 64<<10)
	until(t, d, "the whole write", func() bool {
		for {
			k, err := unix.Read(b, rbuf)
			if k <= 0 || err != nil {
				break
			}
			got = append(got, rbuf[:k]...)
		}
		return len(got) == len(data) || werr != nil
	})
	require.NoError(t, werr)
	require.Equal(t, data, got)
	require.Greater(t, completions, 1, "the write completed partially at least once")
	require.Equal(t, 1, cs.registers, "registered once for the whole transfer")
	require.Zero(t, cs.modifies, "resubmitting from the completion changes no registration")
	require.Equal(t, 1, cs.unregisters, "the interest is dropped once the write is done")
}

// TestClosePendingOpsCancelled: closing an FD cancels its pending one-shot
// operations, which complete with ErrCanceled in a later batch, and stops
// its multishot ones without a callback.
func TestClosePendingOpsCancelled(t *testing.T) {
	d, _ := newDriver(t)
	a, _ := socketpair(t)
	require.NoError(t, unix.SetsockoptInt(a, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096))
	f, err := d.Open(a)
	require.NoError(t, err)
	big := make([]byte, 1<<20)
	_, err = f.TryWrite([][]byte{big})
	require.NoError(t, err)
	var werr error
	writes, reads := 0, 0
	require.NoError(t, f.Write([][]byte{big}, func(n int, err error) { writes++; werr = err }))
	require.NoError(t, f.ReadStart(func(int) []byte { return make([]byte, 8) }, func([]byte, error) { reads++ }))
	require.NoError(t, f.Close())
	require.Zero(t, writes, "the cancellation is not delivered inside Close")
	step(t, d, 0)
	require.Equal(t, 1, writes, "the pending write completes once")
	require.ErrorIs(t, werr, sdk.ErrCanceled)
	step(t, d, 10*time.Millisecond)
	require.Equal(t, 1, writes)
	require.Zero(t, reads, "a stopped read gets no callback")
	require.ErrorIs(t, f.ReadStart(nil, nil), sdk.ErrSelectorClosed)
	_, err = d.Open(a)
	require.NoError(t, err, "a closed descriptor can be opened again")
}

// TestStaleEventsAfterSlotReuse: a slot reused for another descriptor gets
// a new generation, so an event the selector reports late for the old
// registration runs nothing, and a callback already handed out for a closed
// descriptor does not act on the descriptor that took its slot.
func TestStaleEventsAfterSlotReuse(t *testing.T) {
	d, cs := newDriver(t)
	a1, _ := socketpair(t)
	a2, _ := socketpair(t)
	var got []string
	f1, err := d.Open(a1)
	require.NoError(t, err)
	require.NoError(t, f1.Watch(sdk.Read, func() { got = append(got, "old") }))
	oldTok := cs.tokens[0]
	require.NoError(t, f1.Close())
	f2, err := d.Open(a2)
	require.NoError(t, err)
	require.NoError(t, f2.Watch(sdk.Read, func() { got = append(got, "new") }))
	newTok := cs.tokens[1]
	require.Equal(t, oldTok.Slot(), newTok.Slot(), "the freed slot is reused")
	require.NotEqual(t, oldTok.Gen(), newTok.Gen(), "under a new generation")

	cs.inject = []sdk.Event{{Token: oldTok, Events: sdk.Read}, {Token: sdk.MakeToken(1000, 1), Events: sdk.Read}}
	require.Zero(t, step(t, d, 0), "events for a stale or unknown token deliver nothing")
	cs.inject = []sdk.Event{{Token: newTok, Events: sdk.Hangup}}
	require.Equal(t, 1, step(t, d, 0), "a hang-up wakes the reader of the live registration")
	require.Equal(t, []string{"new"}, got)

	// A callback handed out, then its descriptor closed before it ran.
	var ready [8]func()
	cs.inject = []sdk.Event{{Token: newTok, Events: sdk.Read}}
	n, err := d.Poll(ready[:], 0)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, f2.Close())
	f3, err := d.Open(a1)
	require.NoError(t, err)
	require.NoError(t, f3.Watch(sdk.Read, func() { got = append(got, "third") }))
	require.NotEqual(t, newTok.Slot(), cs.tokens[2].Slot(), "a slot with a callback outstanding is not reused")
	ready[0]()
	require.Equal(t, []string{"new"}, got, "the outstanding callback ran nothing")
}

// TestConnectCompletesLater: a connect that finishes at once still
// completes in the next batch, never inside Connect.
func TestConnectCompletesLater(t *testing.T) {
	d, _ := newDriver(t)
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(ln)
	require.NoError(t, unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, unix.Listen(ln, 8))
	lsa, err := unix.Getsockname(ln)
	require.NoError(t, err)
	port := lsa.(*unix.SockaddrInet4).Port

	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(c)
	f, err := d.Open(c)
	require.NoError(t, err)
	var sa sdk.SockAddr
	raw := (*unix.RawSockaddrInet4)(unsafePointer(&sa.Raw))
	raw.Family = unix.AF_INET
	raw.Port = uint16(port>>8) | uint16(port&0xff)<<8
	raw.Addr = [4]byte{127, 0, 0, 1}
	sa.Len = unix.SizeofSockaddrInet4
	done := false
	var cerr error
	require.NoError(t, f.Connect(&sa, func(err error) { done, cerr = true, err }))
	require.False(t, done)
	until(t, d, "the connect", func() bool { return done })
	require.NoError(t, cerr)

	lf, err := d.Open(ln)
	require.NoError(t, err)
	var accepted []int
	require.NoError(t, lf.Accept(4, func(fd int, peer *sdk.SockAddr, err error) {
		require.NoError(t, err)
		require.NotZero(t, peer.Len, "the peer's address comes with the connection")
		accepted = append(accepted, fd)
	}))
	until(t, d, "the accept", func() bool { return len(accepted) == 1 })
	unix.Close(accepted[0])
	lf.AcceptStop()
}

func TestCapabilities(t *testing.T) {
	d, _ := newDriver(t)
	c := d.Capabilities()
	require.Equal(t, "readiness", c.Name)
	require.Equal(t, "epoll", c.Backend)
	require.True(t, c.Has(sdk.CapWatch))
	require.True(t, c.Has(sdk.CapSendfile))
	require.False(t, c.Has(sdk.CapProvidedBuffers))
	require.NoError(t, d.Close())
	_, err := d.Open(0)
	require.True(t, errors.Is(err, sdk.ErrSelectorClosed))
}
