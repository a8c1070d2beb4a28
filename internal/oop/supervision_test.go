package oop_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// runGuard bounds one run of a loop in these tests; it only matters when
// supervision is broken and the loop would otherwise never stop.
const runGuard = time.Minute

// waitSpy tells the test when the loop is blocked in its selector, so a kill
// can land in the middle of a Wait rather than between two.
type waitSpy struct {
	sdk.Selector
	waiting atomic.Bool
}

func (w *waitSpy) Wait(events []sdk.Event, timeout time.Duration) (int, error) {
	w.waiting.Store(true)
	defer w.waiting.Store(false)
	return w.Selector.Wait(events, timeout)
}

// conn is one watched connection: the loop reads end a, the test writes b.
type conn struct {
	a, b  int
	reads atomic.Int64 // reader callbacks that found data
}

// run runs l until it stops, failing the test if it has not within
// runGuard.
func run(t *testing.T, l *kernel.Loop) error {
	t.Helper()
	var fired atomic.Bool
	g := time.AfterFunc(runGuard, func() { fired.Store(true); l.CallSoonThreadsafe(l.Stop) })
	err := l.RunForever()
	g.Stop()
	require.False(t, fired.Load(), "the loop was still running after %v", runGuard)
	return err
}

// TestLoopCarriesOnAfterPluginSIGKILL: the plugin process running a loop's
// epoll selector is SIGKILLed twice, once while the loop is blocked in a
// Wait and once from a callback with more callbacks queued behind it. The
// loop never notices beyond a slower iteration: every registration still
// delivers readiness, every timer and callback scheduled before a kill runs,
// in order, and the exception handler hears nothing.
func TestLoopCarriesOnAfterPluginSIGKILL(t *testing.T) {
	psel := launch(t, plugin.Spec{Name: "epoll"})
	spy := &waitSpy{Selector: psel}
	l := kernel.New(spy, kernel.WithLogger(testLogger(t)))
	defer l.Close()
	var excs []kernel.ErrorContext
	l.SetExceptionHandler(func(_ *kernel.Loop, c kernel.ErrorContext) { excs = append(excs, c) })

	// Six socketpairs and two loopback TCP connections, each watched for
	// reading.
	var conns []*conn
	for i := 0; i < 8; i++ {
		c := &conn{}
		if i < 6 {
			c.a, c.b = socketpair(t)
		} else {
			c.a, c.b = tcpPair(t)
		}
		conns = append(conns, c)
	}
	var allRead func(min int64) bool
	stopWhen := func(cond func() bool) func() {
		return func() {
			if cond() {
				l.Stop()
			}
		}
	}
	var check func()
	for _, c := range conns {
		require.NoError(t, l.AddReader(c.a, func() {
			var buf [64]byte
			n, err := unix.Read(c.a, buf[:])
			if n > 0 && err == nil {
				c.reads.Add(1)
			}
			if check != nil {
				check()
			}
		}))
	}
	allRead = func(min int64) bool {
		for _, c := range conns {
			if c.reads.Load() < min {
				return false
			}
		}
		return true
	}
	writeAll := func() {
		for _, c := range conns {
			_, err := unix.Write(c.b, []byte("x"))
			require.NoError(t, err)
		}
	}

	// Round 0: the plugin works.
	check = stopWhen(func() bool { return allRead(1) })
	writeAll()
	require.NoError(t, run(t, l))
	pid0 := pidOf(t, psel)

	// Round 1: kill the plugin while the loop is blocked in Wait with
	// timers pending, then make every connection readable.
	var order []int
	record := func(v int) func() {
		return func() {
			order = append(order, v)
			check()
		}
	}
	for i := 0; i < 5; i++ {
		_, err := l.CallLater(time.Duration(150+10*i)*time.Millisecond, record(i))
		require.NoError(t, err)
	}
	killed := make(chan error, 1)
	go func() {
		for !spy.waiting.Load() {
			time.Sleep(time.Millisecond)
		}
		err := killErr(pid0)
		for _, c := range conns {
			if _, werr := unix.Write(c.b, []byte("x")); werr != nil && err == nil {
				err = werr
			}
		}
		killed <- err
	}()
	check = stopWhen(func() bool { return allRead(2) && len(order) == 5 })
	require.NoError(t, run(t, l))
	require.NoError(t, <-killed)
	assert.Equal(t, []int{0, 1, 2, 3, 4}, order, "every timer scheduled before the kill ran, in deadline order")
	pid1 := pidOf(t, psel)
	require.NotEqual(t, pid0, pid1, "a new plugin process serves the loop")

	// Round 2: kill the plugin from a callback; callbacks already queued
	// behind it, one from another goroutine, and a timer all still run.
	order = nil
	wrote := make(chan error, 1)
	_, err := l.CallSoon(func() {
		kill(t, pid1) // the loop runs on the test goroutine
		for i := 0; i < 3; i++ {
			_, err := l.CallSoon(record(i))
			require.NoError(t, err)
		}
		_, err := l.CallLater(20*time.Millisecond, record(10))
		require.NoError(t, err)
		go func() {
			_, err := l.CallSoonThreadsafe(record(20))
			for _, c := range conns {
				if _, werr := unix.Write(c.b, []byte("x")); werr != nil && err == nil {
					err = werr
				}
			}
			wrote <- err
		}()
	})
	require.NoError(t, err)
	check = stopWhen(func() bool { return allRead(3) && len(order) == 5 })
	require.NoError(t, run(t, l))
	require.NoError(t, <-wrote)
	require.Len(t, order, 5)
	assert.Equal(t, []int{0, 1, 2}, order[:3], "callbacks queued when the plugin died ran first, in FIFO order")
	assert.ElementsMatch(t, []int{10, 20}, order[3:], "the timer and the thread-safe callback ran")

	st, err := psel.Stats(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 2, st.Restarts)
	assert.NotEqual(t, pid1, st.Pid)
	assert.EqualValues(t, len(conns), st.Registrations, "the new plugin holds every registration")
	assert.Empty(t, excs, "a plugin restart is not an error the program sees")
	assert.False(t, alive(pid0) || alive(pid1), "killed plugins are gone")
}

// TestRepeatedCrashesFailTheLoop: a plugin that keeps dying is restarted
// MaxRestarts times within its outage; the failure after that ends
// RunForever with an error wrapping sdk.ErrPluginFailed, which the
// exception handler also receives, and the loop stays failed rather than
// spinning.
func TestRepeatedCrashesFailTheLoop(t *testing.T) {
	const maxRestarts = 2
	psel := launch(t, plugin.Spec{Name: "epoll", MaxRestarts: maxRestarts, RestartBudget: time.Minute})
	l := kernel.New(psel, kernel.WithLogger(testLogger(t)))
	defer l.Close()
	var excs []kernel.ErrorContext
	l.SetExceptionHandler(func(_ *kernel.Loop, c kernel.ErrorContext) { excs = append(excs, c) })
	require.Contains(t, liveChildren(t), pidOf(t, psel), "liveChildren sees a running plugin")
	a, b := socketpair(t)

	// The first plugin is killed from a callback; after that, each
	// replacement is killed by the reader callback as soon as it has
	// delivered the readiness written before the last kill. So every
	// replacement proves it holds the registration before it dies.
	var pids []int
	killAndWrite := func() {
		pid := pidOf(t, psel)
		pids = append(pids, pid)
		kill(t, pid) // the loop runs on the test goroutine
		_, err := unix.Write(b, []byte("x"))
		require.NoError(t, err)
	}
	reads := 0
	require.NoError(t, l.AddReader(a, func() {
		var buf [8]byte
		if n, _ := unix.Read(a, buf[:]); n > 0 {
			reads++
			killAndWrite()
		}
	}))
	_, err := l.CallSoon(killAndWrite)
	require.NoError(t, err)

	err = run(t, l)
	require.Error(t, err)
	assert.ErrorIs(t, err, sdk.ErrPluginFailed)
	assert.Contains(t, err.Error(), `plugin "epoll"`)
	assert.Contains(t, err.Error(), "could not be kept alive: 3 failures")
	assert.Len(t, pids, maxRestarts+1, "the first plugin and %d replacements were killed", maxRestarts)
	assert.Equal(t, maxRestarts, reads, "each replacement delivered the readiness written before the next kill")
	require.Len(t, excs, 1, "the failure reached the exception handler once")
	assert.ErrorIs(t, excs[0].Err, sdk.ErrPluginFailed)
	assert.True(t, strings.Contains(excs[0].Message, "selector failed"), excs[0].Message)

	// The loop stays failed: a second run fails at once, with the same
	// error, and starts no plugin.
	err2 := run(t, l)
	assert.ErrorIs(t, err2, sdk.ErrPluginFailed)
	for _, pid := range pids {
		assert.False(t, alive(pid), "plugin %d is gone", pid)
	}
	assert.Empty(t, liveChildren(t), "no plugin process is left running after the final failure")
	// Closing a loop whose plugin failed for good releases it without
	// complaint: there is no process left to shut down.
	assert.NoError(t, l.Close())
}

// TestPluginThatFailsEveryStart: the plugin running a loop's selector is
// killed, and every process started to replace it fails at its start. The
// loop keeps running its timers through the outage; once the restart
// budget is spent it either fails with a clear error (the default) or,
// with Spec.Fallback, carries on in process with the registration carried
// over. Either way no plugin process and no socket directory is left.
func TestPluginThatFailsEveryStart(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(map[bool]string{false: "fails", true: "falls-back"}[fallback], func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			fault := filepath.Join(t.TempDir(), "fault")
			t.Setenv(envStartFault, fault)
			const budget = 500 * time.Millisecond
			spec := plugin.Spec{Name: "startfault", RestartBudget: budget, MaxBackoff: 100 * time.Millisecond}
			if fallback {
				spec.Fallback = "startfault"
			}
			psel := launch(t, spec)
			l := kernel.New(psel, kernel.WithLogger(testLogger(t)))
			defer l.Close()
			var excs []kernel.ErrorContext
			l.SetExceptionHandler(func(_ *kernel.Loop, c kernel.ErrorContext) { excs = append(excs, c) })

			a, b := socketpair(t)
			reads := 0
			require.NoError(t, l.AddReader(a, func() {
				var buf [8]byte
				if n, _ := unix.Read(a, buf[:]); n > 0 {
					reads++
					l.Stop()
				}
			}))
			ticks := 0
			var tick func()
			tick = func() {
				ticks++
				_, _ = l.CallLater(20*time.Millisecond, tick)
			}
			_, err := l.CallSoon(func() {
				tick()
				require.NoError(t, os.WriteFile(fault, nil, 0o600))
				kill(t, pidOf(t, psel))
				_, err := unix.Write(b, []byte("x"))
				require.NoError(t, err)
			})
			require.NoError(t, err)
			start := time.Now()
			err = run(t, l)
			took := time.Since(start)
			assert.GreaterOrEqual(t, took, budget, "the outage lasted the restart budget")
			assert.Greater(t, ticks, int(budget/(20*time.Millisecond))/4, "timers kept firing through the outage")
			if fallback {
				require.NoError(t, err)
				assert.Equal(t, 1, reads, "the registration was carried over to the in-process selector")
				st, err := psel.Stats(t.Context())
				require.NoError(t, err)
				assert.True(t, st.FellBack)
				assert.Empty(t, excs, "a fall-back is logged, not an error the program sees")
			} else {
				require.ErrorIs(t, err, sdk.ErrPluginFailed)
				msg := err.Error()
				assert.Contains(t, msg, `selector plugin "startfault"`)
				assert.Contains(t, msg, "could not be kept alive")
				assert.Contains(t, msg, "did not start")
				assert.Zero(t, reads)
				require.Len(t, excs, 1)
			}
			require.NoError(t, l.Close())
			assert.Empty(t, liveChildren(t), "no plugin process left")
			left, _ := os.ReadDir(tmp)
			assert.Empty(t, left, "no socket directory left in TMPDIR")
		})
	}
}
