package testkit_test

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/sdk"
)

// fakeT records what the kit reports, so the tests can check that a setup
// failure or a stuck coroutine does fail the test. FailNow ends the calling
// goroutine, as testing.T's does.
type fakeT struct {
	mu       sync.Mutex
	errs     []string
	failed   bool
	cleanups []func()
}

func (f *fakeT) Helper() {}
func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}
func (f *fakeT) FailNow() {
	f.mu.Lock()
	f.failed = true
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeT) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeT) cleanup() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// within runs fn on a goroutine of its own (FailNow ends it) and returns
// the fake once fn has ended and the cleanups have run.
func within(fn func(ft *fakeT)) *fakeT {
	ft := &fakeT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(ft)
	}()
	<-done
	ft.cleanup()
	return ft
}

func TestNewLoopOnEveryRegisteredBackEnd(t *testing.T) {
	for _, b := range sdk.Selectors.All() {
		t.Run(b.Name, func(t *testing.T) {
			l := testkit.NewLoop(t, b.Name)
			v, err := testkit.Run(t, l, func(co *kernel.Co) (int, error) {
				if err := co.Sleep(time.Millisecond); err != nil {
					return 0, err
				}
				return 7, nil
			})
			require.NoError(t, err)
			assert.Equal(t, 7, v, "Run returns the coroutine's result")
		})
	}
}

func TestNewLoopClosesAtCleanup(t *testing.T) {
	var l *kernel.Loop
	ft := within(func(ft *fakeT) { l = testkit.NewLoop(ft, "") })
	assert.False(t, ft.failed, "%v", ft.errs)
	assert.True(t, l.IsClosed(), "the loop is closed when the test ends")

	// A test that closed its loop itself is fine.
	ft = within(func(ft *fakeT) { testkit.NewLoop(ft, "").Close() })
	assert.False(t, ft.failed)
	assert.Empty(t, ft.errs)
}

func TestNewLoopUnknownBackEndFailsTheTest(t *testing.T) {
	ft := within(func(ft *fakeT) { testkit.NewLoop(ft, "no-such-backend") })
	require.True(t, ft.failed)
	require.Len(t, ft.errs, 1)
	assert.Contains(t, ft.errs[0], "testkit: selector no-such-backend")
}

func TestRunReturnsTheCoroutinesError(t *testing.T) {
	l := testkit.NewLoop(t, "")
	boom := errors.New("boom")
	_, err := testkit.Run(t, l, func(co *kernel.Co) (int, error) { return 0, boom })
	require.ErrorIs(t, err, boom, "the coroutine's own error is the test's to check")
	assert.NotErrorIs(t, err, testkit.ErrNotFinished)
}

func TestGoCancelsAStuckCoroutine(t *testing.T) {
	l := testkit.NewLoop(t, "")
	var seen error
	start := time.Now()
	_, err := testkit.Go(l, 50*time.Millisecond, func(co *kernel.Co) (int, error) {
		seen = co.Sleep(time.Hour)
		return 0, seen
	})
	require.ErrorIs(t, err, testkit.ErrNotFinished)
	assert.ErrorIs(t, seen, kernel.ErrCancelled, "the watchdog cancels the task")
	assert.Contains(t, err.Error(), "still running after 50ms")
	assert.Less(t, time.Since(start), 10*time.Second)

	// The loop is usable afterwards.
	v, err := testkit.Go(l, time.Minute, func(co *kernel.Co) (int, error) { return 1, nil })
	require.NoError(t, err)
	assert.Equal(t, 1, v)
}

func TestGoStopsTheLoopUnderACoroutineThatIgnoresCancellation(t *testing.T) {
	l := testkit.NewLoop(t, "")
	_, err := testkit.Go(l, 20*time.Millisecond, func(co *kernel.Co) (int, error) {
		for {
			// Swallow the cancellation; end only when the loop closes.
			if err := co.Sleep(time.Millisecond); err != nil && !errors.Is(err, kernel.ErrCancelled) {
				return 0, err
			}
		}
	})
	require.ErrorIs(t, err, testkit.ErrNotFinished)
}

func TestRunFailsTheTestWhenTheTaskCannotStart(t *testing.T) {
	ft := within(func(ft *fakeT) {
		l := testkit.NewLoop(ft, "")
		l.Close()
		testkit.Run(ft, l, func(co *kernel.Co) (int, error) { return 0, nil })
	})
	require.True(t, ft.failed)
	assert.Contains(t, ft.errs[0], "create task")
}

func TestSocketPair(t *testing.T) {
	var a, b *kernel.Socket
	ft := within(func(ft *fakeT) {
		a, b = testkit.SocketPair(ft, unix.SOCK_STREAM)
		_, err := unix.Write(a.Fd(), []byte("ping"))
		require.NoError(t, err)
		buf := make([]byte, 8)
		n, err := unix.Read(b.Fd(), buf) // a socketpair delivers at once
		require.NoError(t, err)
		assert.Equal(t, "ping", string(buf[:n]), "the two sockets are connected to each other")
		_, err = unix.Read(b.Fd(), buf)
		assert.ErrorIs(t, err, unix.EAGAIN, "the sockets are non-blocking, as the loop needs")
	})
	require.False(t, ft.failed, "%v", ft.errs)
	assert.Equal(t, -1, a.Fd(), "closed when the test ends")
	assert.Equal(t, -1, b.Fd(), "closed when the test ends")
}

// collector records what a client protocol receives.
type collector struct {
	got  []byte
	eof  bool
	lost bool
}

func (c *collector) ConnectionMade(kernel.BaseTransport) {}
func (c *collector) ConnectionLost(error)                { c.lost = true }
func (c *collector) DataReceived(b []byte)               { c.got = append(c.got, b...) }
func (c *collector) EOFReceived() bool                   { c.eof = true; return true }

// TestConnect: the client reaches a server of the given protocol on
// loopback, and the server's protocol hears it (EchoPair, Connect with
// NewEcho, is what Example runs).
func TestConnect(t *testing.T) {
	l := testkit.NewLoop(t, "")
	var accepted []*collector
	serve := func() *collector { c := &collector{}; accepted = append(accepted, c); return c }
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		srv, tr, err := testkit.Connect(co, serve, &collector{})
		if err != nil {
			return struct{}{}, err
		}
		defer srv.Close()
		defer tr.Close()
		peer, _ := tr.GetExtraInfo("peername")
		assert.Contains(t, fmt.Sprint(peer), testkit.Loopback+":", "the server listens on loopback")
		tr.Write([]byte("to the server"))
		tr.WriteEOF()
		return struct{}{}, testkit.Until(co, testkit.Limit, func() bool { return len(accepted) == 1 && accepted[0].eof })
	})
	require.NoError(t, err)
	require.Len(t, accepted, 1, "one connection")
	assert.Equal(t, "to the server", string(accepted[0].got))
}

func TestConnectFailsCleanly(t *testing.T) {
	l := testkit.NewLoop(t, "")
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		// A client whose ConnectionMade panics makes CreateConnection fail;
		// Connect closes the server it started.
		_, _, err := testkit.Connect(co, testkit.NewEcho, &panicky{})
		return struct{}{}, err
	})
	var pe *kernel.PanicError
	require.ErrorAs(t, err, &pe)
}

type panicky struct{ collector }

func (*panicky) ConnectionMade(kernel.BaseTransport) { panic("no") }

func TestQuickRaceExit(t *testing.T) {
	t.Setenv("GORACE", "halt_on_error=1")
	testkit.QuickRaceExit()
	assert.Equal(t, "halt_on_error=1 atexit_sleep_ms=0", os.Getenv("GORACE"))

	t.Setenv("GORACE", "atexit_sleep_ms=50")
	testkit.QuickRaceExit()
	assert.Equal(t, "atexit_sleep_ms=50", os.Getenv("GORACE"), "an explicit setting is kept")
}

func TestUntil(t *testing.T) {
	l := testkit.NewLoop(t, "")
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		n := 0
		if err := testkit.Until(co, time.Minute, func() bool { n++; return n == 3 }); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, testkit.Until(co, 5*time.Millisecond, func() bool { return false })
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not reached within 5ms")
}

// A logger handed to a goroutine that outlives its test writes nothing to
// the finished test (under -race, a write there is a reported race).
func TestLoggerOutlivesItsTest(t *testing.T) {
	var logger hclog.Logger
	t.Run("short", func(t *testing.T) {
		logger = testkit.Logger(t, "short", hclog.Debug)
		logger.Info("while the test runs")
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		logger.Debug("after the test: dropped")
	}()
	<-done
}
