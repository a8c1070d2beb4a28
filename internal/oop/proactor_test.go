package oop_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/driver/completion"
	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/policy"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
	"github.com/loopkernel/loopkernel/sdk/proactorplane"
)

// The io_uring proactor in its out-of-process placement (policy
// uring-plugin): the real plugin process, this test binary re-executed,
// serving the shared-memory plane; the conformance suites bound to it, and
// what a program sees when the plugin is SIGKILLed under load.

// uringPluginDriver opens the placement exactly as a loop of the
// uring-plugin policy gets it.
func uringPluginDriver(t testing.TB) func() (sdk.Driver, error) {
	t.Helper()
	testkit.NeedUring(t)
	return func() (sdk.Driver, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return policy.ProactorDriver(ctx, "uring-plugin")
	}
}

// uringPluginGaps are the plane's own (sdk/proactorplane's inproc_test.go
// names the same), each skipped with its reason.
var uringPluginGaps = map[string]string{
	"net/sendfile/sock/forced-fallback": "sock_sendfile's read-and-send fallback over the plane hung once under load (not explained; sdk/proactorplane's gap)",
}

// TestUringPluginNetConformance runs the networking contract on the
// out-of-process placement, plain and in debug mode: a plugin process per
// loop, some 9 s a pass under -race on 2 cores.
func TestUringPluginNetConformance(t *testing.T) {
	drv := uringPluginDriver(t)
	t.Run("plain", func(t *testing.T) {
		conformance.RunNet(t, selector.NewEpoll, conformance.NetConfig{Driver: drv, Gaps: uringPluginGaps})
	})
	t.Run("debug", func(t *testing.T) {
		conformance.RunNet(t, selector.NewEpoll, conformance.NetConfig{Driver: drv, Debug: true, Gaps: uringPluginGaps})
	})
}

// TestUringPluginKernelConformance runs the kernel contract (descriptor
// watching through the plugin's POLL) on the out-of-process placement,
// plain and in debug mode.
func TestUringPluginKernelConformance(t *testing.T) {
	drv := uringPluginDriver(t)
	t.Run("plain", func(t *testing.T) {
		conformance.RunKernel(t, selector.NewEpoll, conformance.KernelConfig{Driver: drv})
	})
	t.Run("debug", func(t *testing.T) {
		conformance.RunKernel(t, selector.NewEpoll, conformance.KernelConfig{Driver: drv, Debug: true})
	})
}

// lostRecorder is an echo protocol that keeps how its connection ended.
type lostRecorder struct {
	testkit.Echo
	mu   *sync.Mutex
	lost *[]error
}

func (p *lostRecorder) ConnectionLost(err error) {
	p.mu.Lock()
	*p.lost = append(*p.lost, err)
	p.mu.Unlock()
}

// fdCensus is what the process holds, from /proc: descriptors, memfd
// descriptors, and memfd mappings.
type fdCensus struct{ fds, memfdFDs, memfdMaps int }

func census(t testing.TB) fdCensus {
	t.Helper()
	var c fdCensus
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	for _, e := range entries {
		c.fds++
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, "/memfd:") {
			c.memfdFDs++
		}
	}
	maps, err := os.ReadFile("/proc/self/maps")
	require.NoError(t, err)
	c.memfdMaps = strings.Count(string(maps), "/memfd:")
	return c
}

// echoOnce sends msg on c and reads it back.
func echoOnce(c net.Conn, msg []byte) error {
	if _, err := c.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != string(msg) {
		return fmt.Errorf("echoed %q, sent %q", buf, msg)
	}
	return nil
}

// TestUringPluginSIGKILLUnderLoad: an echo server on the uring-plugin
// placement serves eight connections that echo as fast as they can; the
// plugin is SIGKILLed. Every connection in flight is closed (its client
// sees the end, never a hang), and the server's transports report an error
// that wraps sdk.ErrBackendDied and names the dead plugin; the loop goes
// on, the supervisor starts a new plugin, and new connections echo. Once
// the loop is closed no plugin process is left, and the process holds the
// descriptors, memfd descriptors and memfd mappings it held before.
func TestUringPluginSIGKILLUnderLoad(t *testing.T) {
	newDriver := uringPluginDriver(t)
	// Warm up what is opened once per process and kept: Go's netpoller
	// for the test's clients, the supervisor's descriptor reserve
	// (sdk/plugin's fdlimit.go) for the first plugin.
	wd, err := newDriver()
	require.NoError(t, err)
	require.NoError(t, wd.Close())
	warm, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	wc, err := net.Dial("tcp", warm.Addr().String())
	require.NoError(t, err)
	wc.Close()
	warm.Close()
	before := census(t)
	kidsBefore := testkit.LiveChildren(os.Getpid())

	d, err := newDriver()
	require.NoError(t, err)
	rp := d.(*proactorplane.Driver).Driver.(*completion.Driver).Proactor().(*plugin.RemoteProactor)
	st, err := rp.Stats(t.Context())
	require.NoError(t, err)
	pid0 := st.Pid
	l := kernel.NewOnDriver(d, kernel.WithLogger(testLogger(t)))
	lost, excs := serveEcho(t, l, func(addr string) error { return drive(addr, pid0) })

	st, err = rp.Stats(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 1, st.Restarts, "one restart")
	assert.NotEqual(t, pid0, st.Pid, "a new plugin serves")
	pid1 := st.Pid

	died := 0
	for _, e := range lost {
		if errors.Is(e, sdk.ErrBackendDied) {
			died++
			assert.ErrorContains(t, e, fmt.Sprintf(`proactor plugin "uring" (pid %d) died (signal: killed)`, pid0))
		}
	}
	assert.Equal(t, 8, died, "every connection in flight was closed with the plugin's death: %v", lost)
	t.Logf("connections lost: %d, %d with the plugin's death; exception handler: %q", len(lost), died, excs)

	require.NoError(t, l.Close())
	assert.False(t, testkit.Alive(pid0), "the killed plugin was reaped")
	deadline := time.Now().Add(5 * time.Second)
	for testkit.Alive(pid1) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	assert.False(t, testkit.Alive(pid1), "the replacement stopped with the loop")
	assert.ElementsMatch(t, kidsBefore, testkit.LiveChildren(os.Getpid()), "no plugin process left")
	var after fdCensus
	for {
		// go-plugin's stdio readers let go of the pipes a moment after the
		// process exits.
		if after = census(t); after == before || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !assert.Equal(t, before, after, "descriptors, memfd descriptors, memfd mappings before and after") {
		entries, _ := os.ReadDir("/proc/self/fd")
		for _, e := range entries {
			target, _ := os.Readlink("/proc/self/fd/" + e.Name())
			t.Logf("fd %s -> %s", e.Name(), target)
		}
	}
}

// serveEcho runs an echo server on l until client (given its address, on
// another goroutine) returns, then closes it; it returns how every server
// connection ended and what the exception handler heard.
func serveEcho(t *testing.T, l *kernel.Loop, client func(addr string) error) (lost []error, excs []string) {
	t.Helper()
	var mu sync.Mutex
	l.SetExceptionHandler(func(_ *kernel.Loop, c kernel.ErrorContext) {
		mu.Lock()
		excs = append(excs, fmt.Sprintf("%s: %v", c.Message, c.Err))
		mu.Unlock()
	})
	addr := make(chan string, 1)
	var finished atomic.Bool
	clientErr := make(chan error, 1)
	go func() {
		defer finished.Store(true)
		clientErr <- client(<-addr)
	}()
	_, err := testkit.Go(l, 60*time.Second, func(co *kernel.Co) (struct{}, error) {
		srv, err := kernel.CreateServer(co, func() *lostRecorder { return &lostRecorder{mu: &mu, lost: &lost} },
			[]string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return struct{}{}, err
		}
		port, err := testkit.Port(srv)
		if err != nil {
			return struct{}{}, err
		}
		addr <- "127.0.0.1:" + port
		if err := testkit.Until(co, 50*time.Second, finished.Load); err != nil {
			return struct{}{}, err
		}
		srv.Close()
		return struct{}{}, srv.WaitClosed(co)
	})
	require.NoError(t, err)
	require.NoError(t, <-clientErr)
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(lost), slices.Clone(excs)
}

// drive is the client side of TestUringPluginSIGKILLUnderLoad: eight
// connections echo under load, the plugin pid is killed, every one of
// them must end (EOF or reset) within the deadline, then new connections
// must echo.
func drive(addr string, pid int) (err error) {
	const conns = 8
	var cs []net.Conn
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	msg := []byte(strings.Repeat("x", 64))
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		cs = append(cs, c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := echoOnce(c, msg); err != nil {
			return fmt.Errorf("before the kill: %w", err)
		}
	}
	var echoed atomic.Int64
	ended := make(chan error, conns)
	for _, c := range cs {
		go func() {
			for {
				if err := echoOnce(c, msg); err != nil {
					ended <- err
					return
				}
				echoed.Add(1)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if echoed.Load() == 0 {
		return errors.New("no echo under load before the kill")
	}
	if err := killErr(pid); err != nil {
		return err
	}
	for range conns {
		if err := <-ended; errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("a connection in flight hung after the kill: %w", err)
		}
	}
	// New connections echo once the replacement is attached; the accept
	// was handed to it, and a client may connect during the restart.
	deadline := time.Now().Add(10 * time.Second)
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return fmt.Errorf("after the restart: %w", err)
		}
		cs = append(cs, c)
		_ = c.SetDeadline(deadline)
		for range 10 {
			if err := echoOnce(c, msg); err != nil {
				return fmt.Errorf("after the restart: %w", err)
			}
		}
	}
	return nil
}

// TestUringPluginSIGSTOPKilledAsHung: a proactor plugin that stops (SIGSTOP)
// stops advancing its heartbeat on the plane; the supervisor kills it as
// hung within the hang limit (1.5 s with ReplyTimeout 1 s), the
// connections in flight end with the plugin's death, the incident is
// counted as unanswered, and new connections echo on the replacement.
func TestUringPluginSIGSTOPKilledAsHung(t *testing.T) {
	testkit.NeedUring(t)
	pr, err := plugin.Launch(t.Context(), sdk.Proactors, plugin.Spec{Name: "uring", ReplyTimeout: time.Second, Logger: testLogger(t)})
	require.NoError(t, err)
	rp := pr.(*plugin.RemoteProactor)
	cd, err := completion.New(rp)
	require.NoError(t, err)
	l := kernel.NewOnDriver(proactorplane.WrapDriver(cd, "plugin:uring", rp.Forget, rp.DiedError), kernel.WithLogger(testLogger(t)))
	defer l.Close()
	st, err := rp.Stats(t.Context())
	require.NoError(t, err)
	pid0 := st.Pid

	var took time.Duration
	lost, _ := serveEcho(t, l, func(addr string) error {
		msg := []byte("ping")
		var cs []net.Conn
		defer func() {
			for _, c := range cs {
				c.Close()
			}
		}()
		for range 2 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			cs = append(cs, c)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if err := echoOnce(c, msg); err != nil {
				return fmt.Errorf("before the stop: %w", err)
			}
		}
		t0 := time.Now()
		if err := unix.Kill(pid0, unix.SIGSTOP); err != nil {
			return err
		}
		for _, c := range cs {
			var b [1]byte
			if _, err := c.Read(b[:]); errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("a connection outlived the hung plugin: %w", err)
			}
		}
		took = time.Since(t0)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		cs = append(cs, c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return echoOnce(c, msg)
	})
	t.Logf("connections ended %v after SIGSTOP", took)
	assert.Less(t, took, 4*time.Second, "the hang was noticed within the hang limit and a tick")
	died := 0
	for _, e := range lost {
		if errors.Is(e, sdk.ErrBackendDied) {
			died++
		}
	}
	assert.Equal(t, 2, died, "both connections in flight ended with the plugin's death: %v", lost)
	assert.Equal(t, 1, rp.Incidents().Unanswered, "counted as a hang: %+v", rp.Incidents())
	assert.False(t, testkit.Alive(pid0), "the stopped plugin was killed and reaped")
}
