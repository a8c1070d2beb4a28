package dataplane

import (
	"context"
	"errors"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// plugin is an in-process Serve goroutine on the plugin end of a pair.
type plugin struct {
	sel    *testEpoll
	conn   *os.File
	cancel context.CancelFunc
	done   chan error
}

func startPlugin(t *testing.T, sel *testEpoll) (host *os.File, p *plugin) {
	t.Helper()
	host, pconn, err := Socketpair()
	require.NoError(t, err)
	if sel == nil {
		sel, err = newTestEpoll()
		require.NoError(t, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p = &plugin{sel: sel, conn: pconn, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- Serve(ctx, pconn, sel, hclog.NewNullLogger()) }()
	t.Cleanup(p.stop)
	return host, p
}

// stop cancels Serve, waits for it, and releases its resources; it is
// idempotent so tests may kill a plugin early.
func (p *plugin) stop() {
	p.cancel()
	if p.done != nil {
		<-p.done
		p.done = nil
	}
	p.conn.Close()
	p.sel.Close()
}

// wait returns Serve's result (after the host closed or the plugin died).
func (p *plugin) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done = nil
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return")
		return nil
	}
}

func newClient(t *testing.T, sel *testEpoll) (*Client, *plugin) {
	t.Helper()
	host, p := startPlugin(t, sel)
	c, err := NewClient(host, hclog.NewNullLogger())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c, p
}

// newTappedClient is newClient with a tap counting the frames.
func newTappedClient(t *testing.T) (*Client, *tap) {
	t.Helper()
	host, _ := startPlugin(t, nil)
	host, tp := tapped(t, host)
	c, err := NewClient(host, hclog.NewNullLogger())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c, tp
}

// pair returns a connected stream socket pair, closed at cleanup.
func pair(t testing.TB) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// watchdog closes c if the test blocks too long, so a lost wake fails the
// test (Wait returns ErrClosed) instead of hanging it.
func watchdog(t *testing.T, c *Client) {
	tm := time.AfterFunc(30*time.Second, func() { c.Close() })
	t.Cleanup(func() { tm.Stop() })
}

func tokens(evs []sdk.Event) map[sdk.Token]sdk.Events {
	m := map[sdk.Token]sdk.Events{}
	for _, e := range evs {
		m[e.Token] |= e.Events
	}
	return m
}

// An epoll selector has no limit of its own; the plugin's descriptors are
// the bound (each registration costs it a copy), within a handful of
// what getrlimit and /proc/self/fd say.
func TestHelloCapabilities(t *testing.T) {
	c, _ := newClient(t, nil)
	caps := c.Capabilities()
	assert.Equal(t, "test-epoll", caps.Name)
	assert.False(t, caps.RegularFiles)
	want := descriptorBudget()
	require.Positive(t, want)
	assert.InDelta(t, want, caps.MaxFDs, 8, "the descriptor budget")
}

func TestReadinessRoundTrip(t *testing.T) {
	c, _ := newClient(t, nil)
	a, b := pair(t)
	tok := sdk.MakeToken(3, 1)
	require.NoError(t, c.Register(a, tok, sdk.Read))
	evs := make([]sdk.Event, 8)
	n, err := c.Wait(evs, 0)
	require.NoError(t, err)
	require.Zero(t, n, "nothing written yet")

	_, err = unix.Write(b, []byte("x"))
	require.NoError(t, err)
	n, err = c.Wait(evs, -1)
	require.NoError(t, err)
	require.Equal(t, []sdk.Event{{Token: tok, Events: sdk.Read}}, evs[:n])

	// Level-triggered: still ready until read.
	n, err = c.Wait(evs, -1)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	var buf [1]byte
	_, err = unix.Read(a, buf[:])
	require.NoError(t, err)
	n, err = c.Wait(evs, 0)
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestBatchingOneExchangePerWait(t *testing.T) {
	c, tp := newTappedClient(t)
	evs := make([]sdk.Event, 8)
	var fds [4][2]int
	for i := range fds {
		fds[i][0], fds[i][1] = pair(t)
		_, err := unix.Write(fds[i][1], []byte("x"))
		require.NoError(t, err)
	}
	t1, t2, t3, t4 := sdk.MakeToken(1, 1), sdk.MakeToken(2, 1), sdk.MakeToken(3, 1), sdk.MakeToken(4, 1)
	require.NoError(t, c.Register(fds[0][0], t1, sdk.Read))
	require.NoError(t, c.Register(fds[1][0], t2, 0))
	require.NoError(t, c.Register(fds[2][0], t3, sdk.Read))
	require.NoError(t, c.Modify(t2, sdk.Read|sdk.Write)) // folds into the queued register
	require.NoError(t, c.Unregister(t3))                 // cancels the queued register
	require.Len(t, c.queue, 3)

	n, err := c.Wait(evs, -1)
	require.NoError(t, err)
	require.Equal(t, map[sdk.Token]sdk.Events{t1: sdk.Read, t2: sdk.Read | sdk.Write}, tokens(evs[:n]))
	require.Equal(t, uint64(1), tp.replies.Load())
	require.Equal(t, uint64(1), tp.requests.Load())

	// Changes to flushed registrations go out with the next Wait.
	require.NoError(t, c.Modify(t1, sdk.Write))
	require.NoError(t, c.Unregister(t2))
	require.NoError(t, c.Register(fds[3][0], t4, sdk.Read))
	require.NoError(t, c.Modify(t4, sdk.Write))
	require.NoError(t, c.Unregister(t4)) // Register+Modify+Unregister queued: nothing is sent
	n, err = c.Wait(evs, -1)
	require.NoError(t, err)
	require.Equal(t, map[sdk.Token]sdk.Events{t1: sdk.Write}, tokens(evs[:n]))
	require.Equal(t, uint64(2), tp.replies.Load())
	require.Equal(t, uint64(2), tp.requests.Load())

	// An idle Wait is still exactly one exchange.
	require.NoError(t, c.Modify(t1, 0))
	n, err = c.Wait(evs, 0)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, uint64(3), tp.replies.Load())
	require.Equal(t, uint64(3), tp.requests.Load())
}

func TestQueuedRegisterOfClosedFDIsNotSent(t *testing.T) {
	c, _ := newClient(t, nil)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fds[1])
	tok := sdk.MakeToken(1, 1)
	require.NoError(t, c.Register(fds[0], tok, sdk.Read))
	require.NoError(t, c.Unregister(tok))
	require.NoError(t, unix.Close(fds[0])) // the kernel closes after Unregister
	_, err = c.Wait(make([]sdk.Event, 4), 0)
	require.NoError(t, err, "a cancelled registration must not send its (closed) descriptor")
}

func TestSynchronousErrors(t *testing.T) {
	c, _ := newClient(t, nil)
	a, b := pair(t)
	tok := sdk.MakeToken(1, 1)
	require.NoError(t, c.Register(a, tok, sdk.Read))
	require.ErrorIs(t, c.Register(b, tok, sdk.Read), sdk.ErrExists)
	require.ErrorIs(t, c.Register(a, sdk.MakeToken(2, 1), sdk.Read), sdk.ErrExists)
	require.ErrorIs(t, c.Modify(sdk.MakeToken(9, 1), sdk.Read), sdk.ErrNotRegistered)
	require.ErrorIs(t, c.Unregister(sdk.MakeToken(9, 1)), sdk.ErrNotRegistered)
	require.ErrorIs(t, c.Register(b, reservedToken, sdk.Read), unix.EINVAL)
	require.ErrorIs(t, c.Register(-1, sdk.MakeToken(3, 1), sdk.Read), unix.EBADF)

	f, err := os.CreateTemp(t.TempDir(), "regular")
	require.NoError(t, err)
	defer f.Close()
	require.ErrorIs(t, c.Register(int(f.Fd()), sdk.MakeToken(4, 1), sdk.Read), unix.EPERM)

	require.NoError(t, c.Unregister(tok))
	require.ErrorIs(t, c.Unregister(tok), sdk.ErrNotRegistered)
	// The slot's next generation is a different token and may reuse the fd.
	require.NoError(t, c.Register(a, sdk.MakeToken(1, 2), sdk.Read))
	_, err = c.Wait(make([]sdk.Event, 4), 0)
	require.NoError(t, err)
}

// The plugin's selector refuses a registration the host could not vet (the
// test selector claims regular files but epoll refuses them): the error
// comes back as one Error event for the token, and the plugin drops it.
func TestPluginRefusalBecomesErrorEvent(t *testing.T) {
	sel, err := newTestEpoll()
	require.NoError(t, err)
	sel.regularFiles = true
	c, _ := newClient(t, sel)
	f, err := os.CreateTemp(t.TempDir(), "regular")
	require.NoError(t, err)
	defer f.Close()
	a, b := pair(t)
	_, err = unix.Write(b, []byte("x"))
	require.NoError(t, err)

	before := openFDs(t)
	bad, good := sdk.MakeToken(1, 1), sdk.MakeToken(2, 1)
	require.NoError(t, c.Register(int(f.Fd()), bad, sdk.Read))
	require.NoError(t, c.Register(a, good, sdk.Read))
	evs := make([]sdk.Event, 4)
	n, err := c.Wait(evs, -1)
	require.NoError(t, err)
	require.Equal(t, map[sdk.Token]sdk.Events{bad: sdk.Error, good: sdk.Read}, tokens(evs[:n]))
	require.Equal(t, before+1, openFDs(t), "the plugin keeps only the accepted copy")

	// The error is reported once; later changes to the failed token stay local.
	require.NoError(t, c.Modify(bad, sdk.Write))
	n, err = c.Wait(evs, -1)
	require.NoError(t, err)
	require.Equal(t, map[sdk.Token]sdk.Events{good: sdk.Read}, tokens(evs[:n]))
	require.NoError(t, c.Unregister(bad))
	require.NoError(t, c.Unregister(good))
	n, err = c.Wait(evs, 0)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, before, openFDs(t))
}

func TestWakeFromAnotherGoroutine(t *testing.T) {
	c, _ := newClient(t, nil)
	watchdog(t, c)
	evs := make([]sdk.Event, 4)

	// A wake before the Wait makes that Wait return at once.
	require.NoError(t, c.Wake())
	n, err := c.Wait(evs, -1)
	require.NoError(t, err)
	require.Zero(t, n)

	// Wakes from other goroutines while the loop is blocked.
	for range 20 {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for range 10 {
					if err := c.Wake(); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		close(start)
		n, err := c.Wait(evs, -1)
		require.NoError(t, err)
		require.Zero(t, n)
		wg.Wait()
		// Some wakes may land after the Wait returned; they make the
		// next Wait return promptly, which drains them.
		_, err = c.Wait(evs, 0)
		require.NoError(t, err)
	}
}

func TestWakesCoalesce(t *testing.T) {
	c, fake := newFakeClient(t)
	for range 100 {
		require.NoError(t, c.Wake())
	}
	require.Equal(t, 1, fake.countQueued(t, tWake), "a burst of wakes costs one frame")
	// A Wait re-arms Wake.
	done := fake.replyAsync(t, func(seq uint32) []byte { return encEvents(seq, 0) })
	_, err := c.Wait(make([]sdk.Event, 4), 0)
	require.NoError(t, err)
	<-done
	require.NoError(t, c.Wake())
	require.NoError(t, c.Wake())
	require.Equal(t, 1, fake.countQueued(t, tWake))

	// Settle: a Wait whose reply re-arms Wake.
	done = fake.replyAsync(t, func(seq uint32) []byte { return encEvents(seq, 0) })
	_, err = c.Wait(make([]sdk.Event, 4), -1)
	require.NoError(t, err)
	<-done

	// A wake during a Wait ends it; a wake after that Wait returned must
	// still send its own frame, or the next Wait would sleep through it.
	done2 := make(chan struct{})
	go func() {
		defer close(done2)
		req := fake.read(t) // the Wait is now in progress
		seq := le.Uint32(req[12:])
		if err := c.Wake(); err != nil {
			t.Error(err)
		}
		if w := fake.read(t); w == nil || w[5] != tWake {
			t.Errorf("want a wake frame, got %x", w)
		}
		fake.send(t, encEvents(seq, fWoken))
	}()
	n, err := c.Wait(make([]sdk.Event, 4), -1)
	require.NoError(t, err)
	require.Zero(t, n)
	<-done2
	require.NoError(t, c.Wake())
	require.Equal(t, 1, fake.countQueued(t, tWake), "a wake between two Waits sends a frame")
}

func TestCloseReleasesBlockedWait(t *testing.T) {
	c, p := newClient(t, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Wait(make([]sdk.Event, 4), -1)
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond) // let Wait block (either order passes)
	require.NoError(t, c.Close())
	require.ErrorIs(t, <-errc, sdk.ErrSelectorClosed)
	require.NoError(t, p.wait(t), "Serve ends cleanly on goodbye")
	require.ErrorIs(t, c.Close(), sdk.ErrSelectorClosed)
	require.ErrorIs(t, c.Wake(), sdk.ErrSelectorClosed)
	require.ErrorIs(t, c.Register(0, 1, sdk.Read), sdk.ErrSelectorClosed)
	_, err := c.Wait(nil, 0)
	require.ErrorIs(t, err, sdk.ErrSelectorClosed)
}

func TestPluginClosesCopies(t *testing.T) {
	base := openFDs(t)
	c, p := newClient(t, nil)
	withPlugin := openFDs(t)
	var toks []sdk.Token
	for i := range 10 {
		a, _ := pair(t)
		tok := sdk.MakeToken(uint32(i), 1)
		require.NoError(t, c.Register(a, tok, sdk.Read))
		toks = append(toks, tok)
	}
	afterPairs := openFDs(t)
	_, err := c.Wait(make([]sdk.Event, 16), 0)
	require.NoError(t, err)
	require.Equal(t, afterPairs+10, openFDs(t), "the plugin holds one copy per registration")
	for _, tok := range toks[:5] {
		require.NoError(t, c.Unregister(tok))
	}
	_, err = c.Wait(make([]sdk.Event, 16), 0)
	require.NoError(t, err)
	require.Equal(t, afterPairs+5, openFDs(t), "unregister closes the plugin's copy")

	require.NoError(t, c.Close())
	require.NoError(t, p.wait(t))
	require.Equal(t, afterPairs-1, openFDs(t),
		"Serve closes every copy on exit; Close closes the host end (the plugin end stays the caller's)")
	require.Equal(t, base+4, withPlugin)
}

func TestBatchLargerThanOneFrame(t *testing.T) {
	c, tp := newTappedClient(t)
	const n = maxFDsPerFrame + 50
	for i := range n {
		a, b := pair(t)
		_, err := unix.Write(b, []byte("x"))
		require.NoError(t, err)
		require.NoError(t, c.Register(a, sdk.MakeToken(uint32(i), 1), sdk.Read))
	}
	evs := make([]sdk.Event, n+10)
	got, err := c.Wait(evs, -1)
	require.NoError(t, err)
	require.Equal(t, uint64(1), tp.replies.Load())
	require.Equal(t, uint64(2), tp.requests.Load(), "one frame per %d descriptors", maxFDsPerFrame)
	seen := tokens(evs[:got])
	for got < n { // epoll may report fewer than all ready at once
		m, err := c.Wait(evs, -1)
		require.NoError(t, err)
		for k, v := range tokens(evs[:m]) {
			if _, dup := seen[k]; !dup {
				got++
			}
			seen[k] |= v
		}
	}
	require.Len(t, seen, n)
	// A small events slice bounds the reply.
	m, err := c.Wait(evs[:3], -1)
	require.NoError(t, err)
	require.Equal(t, 3, m)
}

func TestEOFIsPeerGone(t *testing.T) {
	c, p := newClient(t, nil)
	p.stop() // cancel: Serve shuts the socket down and returns
	_, err := c.Wait(make([]sdk.Event, 4), -1)
	require.ErrorIs(t, err, ErrPeerGone)
	err = c.Wake()
	if err != nil {
		require.ErrorIs(t, err, ErrPeerGone)
	}
}

func TestServeCancelled(t *testing.T) {
	c, p := newClient(t, nil)
	a, _ := pair(t)
	require.NoError(t, c.Register(a, 1, sdk.Read))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Wait(make([]sdk.Event, 4), -1)
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond) // usually mid-wait; either order passes
	p.cancel()
	require.ErrorIs(t, p.wait(t), context.Canceled)
	require.ErrorIs(t, <-errc, ErrPeerGone)
}

func TestReplaceRestoresRegistrations(t *testing.T) {
	c, p := newClient(t, nil)
	watchdog(t, c)
	const n = 6
	peers := make([]int, n)
	want := map[sdk.Token]sdk.Events{}
	for i := range n {
		a, b := pair(t)
		peers[i] = b
		tok := sdk.MakeToken(uint32(i), 1)
		in := sdk.Read
		if i%2 == 1 {
			in = sdk.Write // already writable
		}
		require.NoError(t, c.Register(a, tok, in))
		want[tok] = in
	}
	evs := make([]sdk.Event, 16)
	_, err := c.Wait(evs, 0)
	require.NoError(t, err)

	// Kill the plugin (its copies go with it), then queue more changes
	// that must survive the replacement too.
	base := openFDs(t)
	p.stop()
	require.Equal(t, base-n-3, openFDs(t), "a dead plugin's copies are closed (with its end and epoll)")
	require.NoError(t, c.Unregister(sdk.MakeToken(0, 1)))
	delete(want, sdk.MakeToken(0, 1))
	require.NoError(t, c.Modify(sdk.MakeToken(2, 1), sdk.Read|sdk.Write))
	want[sdk.MakeToken(2, 1)] = sdk.Write
	_, err = c.Wait(evs, -1)
	require.ErrorIs(t, err, ErrPeerGone)

	host, _ := startPlugin(t, nil)
	require.NoError(t, c.Replace(host))
	for i := 0; i < n; i += 2 {
		_, err := unix.Write(peers[i], []byte("x"))
		require.NoError(t, err)
	}
	want[sdk.MakeToken(2, 1)] = sdk.Read | sdk.Write
	got, err := c.Wait(evs, -1)
	require.NoError(t, err)
	require.Equal(t, want, tokens(evs[:got]))
}

func TestReplaceAfterPeerClosed(t *testing.T) {
	c, fake := newFakeClient(t)
	a, b := pair(t)
	tok := sdk.MakeToken(7, 3)
	require.NoError(t, c.Register(a, tok, sdk.Read))
	fake.conn.Close()
	_, err := c.Wait(make([]sdk.Event, 4), -1)
	require.ErrorIs(t, err, ErrPeerGone)

	host, _ := startPlugin(t, nil)
	require.NoError(t, c.Replace(host))
	_, err = unix.Write(b, []byte("x"))
	require.NoError(t, err)
	evs := make([]sdk.Event, 4)
	// The first Wait after Replace polls (a wake may have been lost).
	n, err := c.Wait(evs, -1)
	require.NoError(t, err)
	if n == 0 {
		n, err = c.Wait(evs, -1)
		require.NoError(t, err)
	}
	require.Equal(t, []sdk.Event{{Token: tok, Events: sdk.Read}}, evs[:n])
}

func TestReplaceHelloFailure(t *testing.T) {
	c, fake := newFakeClient(t)
	fake.conn.Close()
	host, pconn, err := Socketpair()
	require.NoError(t, err)
	pconn.Close() // a plugin that dies before hello
	require.ErrorIs(t, c.Replace(host), ErrPeerGone)
	_, err = c.Wait(nil, 0)
	require.ErrorIs(t, err, ErrPeerGone)
	host2, _ := startPlugin(t, nil)
	require.NoError(t, c.Replace(host2))
	_, err = c.Wait(nil, 0)
	require.NoError(t, err)
}

func TestNewClientRefused(t *testing.T) {
	host, pconn, err := Socketpair()
	require.NoError(t, err)
	f := newFake(pconn)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.read(t)
		f.send(t, encError(0, uint32(unix.EPROTONOSUPPORT), "version 1 unsupported"))
	}()
	_, err = NewClient(host, nil)
	require.ErrorIs(t, err, unix.EPROTONOSUPPORT)
	<-done
	pconn.Close()
}

// errors.Is must see through the wrapping for supervisors.
func TestErrorsWrap(t *testing.T) {
	err := sockErr("recvmsg", unix.ECONNRESET)
	require.True(t, errors.Is(err, ErrPeerGone) && errors.Is(err, unix.ECONNRESET))
}

// TestWaitAllocatesNothing: the steady-state loop (interest churn plus one
// exchange with an event) allocates nothing on either side; AllocsPerRun
// counts the in-process plugin's allocations too.
func TestWaitAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	c, _ := newClient(t, nil)
	a, b := pair(t)
	_, err := unix.Write(b, []byte("x"))
	require.NoError(t, err)
	tok := sdk.MakeToken(1, 1)
	require.NoError(t, c.Register(a, tok, sdk.Read))
	evs := make([]sdk.Event, 8)
	flip := false
	step := func() {
		flip = !flip
		in := sdk.Read
		if flip {
			in |= sdk.Write
		}
		if err := c.Modify(tok, in); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Wait(evs, -1); err != nil || n != 1 {
			t.Fatalf("Wait = %d, %v", n, err)
		}
	}
	step() // warm the queue and maps
	if allocs := testing.AllocsPerRun(200, step); allocs != 0 {
		t.Fatalf("%v allocations per Modify+Wait, want 0", allocs)
	}
}

// A descriptor closed without Unregister before its registration was sent
// costs that registration (an Error event), not the connection.
func TestClosedBeforeSendBecomesErrorEvent(t *testing.T) {
	c, _ := newClient(t, nil)
	a, b := pair(t)
	_, err := unix.Write(b, []byte("x"))
	require.NoError(t, err)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fds[1])
	good, bad := sdk.MakeToken(1, 1), sdk.MakeToken(2, 1)
	require.NoError(t, c.Register(a, good, sdk.Read))
	require.NoError(t, c.Register(fds[0], bad, sdk.Read))
	require.NoError(t, unix.Close(fds[0])) // contract broken: closed while registered
	evs := make([]sdk.Event, 4)
	n, err := c.Wait(evs, -1)
	require.NoError(t, err)
	require.Equal(t, map[sdk.Token]sdk.Events{good: sdk.Read, bad: sdk.Error}, tokens(evs[:n]))
	require.NoError(t, c.Unregister(bad))
	n, err = c.Wait(evs, -1)
	require.NoError(t, err)
	require.Equal(t, []sdk.Event{{Token: good, Events: sdk.Read}}, evs[:n])
}
