package plugin

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/dataplane"
	pb "github.com/loopkernel/loopkernel/sdk/proto"
)

func launch(t testing.TB, spec Spec) *RemoteSelector {
	t.Helper()
	if _, bench := t.(*testing.B); bench && spec.Logger == nil {
		spec.Logger = hclog.NewNullLogger()
	}
	if spec.Logger == nil {
		spec.Logger = testLogger(t)
	}
	sel, err := Launch(context.Background(), sdk.Selectors, spec)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sel.Close() })
	return sel.(*RemoteSelector)
}

// pipe returns a pipe's ends as descriptors, closed at cleanup.
func pipe(t testing.TB) (r, w int) {
	t.Helper()
	var p [2]int
	require.NoError(t, unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC))
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

// waitFor waits until a Wait reports tok (restarts in between return 0).
func waitFor(t *testing.T, sel sdk.Selector, tok sdk.Token) sdk.Events {
	t.Helper()
	evs := make([]sdk.Event, 8)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n, err := sel.Wait(evs, time.Second)
		require.NoError(t, err)
		for _, e := range evs[:n] {
			if e.Token == tok {
				return e.Events
			}
		}
	}
	t.Fatalf("no event for %v within 10s", tok)
	return 0
}

// alive reports whether pid is a process that has not exited. A zombie has
// exited: once its parent (the host) is gone, reaping it is up to init,
// which may take its time.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

func TestReadinessThroughThePlugin(t *testing.T) {
	sel := launch(t, Spec{Name: "testpoll"})
	assert.Equal(t, "testpoll", sel.Capabilities().Name)
	r, w := pipe(t)
	tok := sdk.MakeToken(1, 1)
	require.NoError(t, sel.Register(r, tok, sdk.Read))

	evs := make([]sdk.Event, 4)
	n, err := sel.Wait(evs, 0)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing written yet")

	_, err = unix.Write(w, []byte("x"))
	require.NoError(t, err)
	assert.Equal(t, sdk.Read, waitFor(t, sel, tok))
	// Level-triggered: still readable.
	assert.Equal(t, sdk.Read, waitFor(t, sel, tok))

	require.NoError(t, sel.Modify(tok, 0))
	n, err = sel.Wait(evs, 0)
	require.NoError(t, err)
	assert.Zero(t, n, "empty interest reports nothing")
	require.NoError(t, sel.Unregister(tok))
	assert.ErrorIs(t, sel.Unregister(tok), sdk.ErrNotRegistered)

	st, err := sel.Stats(context.Background())
	require.NoError(t, err)
	assert.NotZero(t, st.Waits)
	assert.NotZero(t, st.Events)
	assert.Positive(t, st.CPUUser+st.CPUSys, "plugin CPU time from getrusage")
	assert.Zero(t, st.Restarts)
}

func TestWakeEndsAnIndefiniteWait(t *testing.T) {
	sel := launch(t, Spec{Name: "testpoll"})
	done := make(chan error, 1)
	go func() {
		_, err := sel.Wait(make([]sdk.Event, 1), -1)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, sel.Wake())
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Wake did not end the Wait")
	}
}

func TestRestartAfterSIGKILLKeepsRegistrations(t *testing.T) {
	sel := launch(t, Spec{Name: "testpoll"})
	r1, w1 := pipe(t)
	r2, _ := pipe(t)
	tok1, tok2 := sdk.MakeToken(1, 7), sdk.MakeToken(2, 7)
	require.NoError(t, sel.Register(r1, tok1, sdk.Read))
	require.NoError(t, sel.Register(r2, tok2, sdk.Read))
	_, err := unix.Write(w1, []byte("x"))
	require.NoError(t, err)
	assert.Equal(t, sdk.Read, waitFor(t, sel, tok1))

	before, err := sel.Stats(context.Background())
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(before.Pid, syscall.SIGKILL))

	// The first Wait after the death restarts and returns 0; a later one
	// reports the registration carried over to the new process.
	assert.Equal(t, sdk.Read, waitFor(t, sel, tok1))
	after, err := sel.Stats(context.Background())
	require.NoError(t, err)
	assert.NotEqual(t, before.Pid, after.Pid)
	assert.Equal(t, 1, after.Restarts)
	assert.EqualValues(t, 2, after.Registrations, "both registrations handed over")
	assert.Greater(t, after.CPUUser+after.CPUSys, before.CPUUser+before.CPUSys, "the dead plugin's CPU time still counts")
	assert.False(t, alive(before.Pid), "old plugin reaped")
}

// waitUntilError calls Wait with timeout until it fails (within a minute),
// as a loop would, and returns the error.
func waitUntilError(t *testing.T, sel sdk.Selector, timeout time.Duration) error {
	t.Helper()
	evs := make([]sdk.Event, 1)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if _, err := sel.Wait(evs, timeout); err != nil {
			return err
		}
	}
	t.Fatal("Wait still succeeding after a minute")
	return nil
}

// A plugin that dies on every wait is restarted with growing backoff until
// its outage outlasts the restart budget (time, not attempts), then fails
// with a clear error. Throughout, Wait returns within its timeout, so the
// loop's timers and callbacks would keep running.
func TestCrashLoopBacksOffThenFails(t *testing.T) {
	const budget = 400 * time.Millisecond
	sel := launch(t, Spec{Name: "crashloop", RestartBudget: budget, MaxBackoff: 50 * time.Millisecond})
	evs := make([]sdk.Event, 1)
	start := time.Now()
	var err error
	var slowest time.Duration
	for time.Since(start) < time.Minute {
		t0 := time.Now()
		_, err = sel.Wait(evs, 5*time.Millisecond)
		if err != nil {
			break
		}
		slowest = max(slowest, time.Since(t0))
	}
	took := time.Since(start)
	require.Error(t, err)
	assert.ErrorIs(t, err, sdk.ErrPluginFailed)
	msg := err.Error()
	assert.Contains(t, msg, `"crashloop"`)
	assert.Contains(t, msg, "exit status 3")
	assert.Contains(t, msg, "could not be kept alive")
	assert.Contains(t, msg, "restart budget 400ms")
	assert.GreaterOrEqual(t, took, budget, "gave up only once the budget was spent")
	// Backoff 0, 10, 20, 40, then 50ms: at most some 10 restarts in
	// 400ms (fewer when a start itself takes long), not one per Wait.
	assert.GreaterOrEqual(t, sel.total, 1)
	assert.Less(t, sel.total, 20, "backoff spaced the restarts")
	assert.Less(t, slowest, 500*time.Millisecond, "every Wait returned within its timeout (plus scheduling): starts run in the background")
	// The failure is sticky.
	_, err2 := sel.Wait(evs, 0)
	assert.ErrorIs(t, err2, sdk.ErrPluginFailed)
	assert.ErrorIs(t, sel.Register(0, 1, sdk.Read), sdk.ErrPluginFailed)
}

// A Wake ends a Wait that sleeps out a restart's backoff, as it ends any
// Wait: the loop must hear call_soon_threadsafe while its plugin is down.
func TestWakeEndsABackoff(t *testing.T) {
	sel := launch(t, Spec{Name: "crashloop", RestartBudget: time.Hour, MaxBackoff: time.Hour, Logger: hclog.NewNullLogger()})
	evs := make([]sdk.Event, 1)
	for !sel.down || sel.starting != nil {
		_, err := sel.Wait(evs, time.Millisecond)
		require.NoError(t, err)
	}
	sel.retryAt = time.Now().Add(time.Hour) // as deep into an outage as it gets
	go func() {
		time.Sleep(50 * time.Millisecond)
		_ = sel.Wake()
	}()
	t0 := time.Now()
	n, err := sel.Wait(evs, -1)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Less(t, time.Since(t0), 5*time.Second, "the Wake ended the backoff sleep")
	assert.True(t, sel.down, "still down: the backoff is not over")
}

func TestCloseEndsARestartInProgress(t *testing.T) {
	sel := launch(t, Spec{Name: "crashloop", RestartBudget: time.Hour, MaxBackoff: time.Hour})
	done := make(chan error, 1)
	go func() {
		evs := make([]sdk.Event, 1)
		for {
			if _, err := sel.Wait(evs, -1); err != nil {
				done <- err
				return
			}
		}
	}()
	// Let it crash a few times, into a long backoff.
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, sel.Close())
	select {
	case err := <-done:
		assert.ErrorIs(t, err, sdk.ErrSelectorClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the restart loop")
	}
}

func TestHungPluginIsKilledAndReplaced(t *testing.T) {
	sel := launch(t, Spec{Name: "hang", MaxRestarts: 1, ReplyTimeout: 100 * time.Millisecond})
	evs := make([]sdk.Event, 1)
	n, err := sel.Wait(evs, 0)
	require.NoError(t, err, "first hang: restarted")
	assert.Zero(t, n)
	err = waitUntilError(t, sel, 20*time.Millisecond)
	require.ErrorIs(t, err, sdk.ErrPluginFailed)
	assert.ErrorIs(t, err, errNoAnswer)
	assert.Contains(t, err.Error(), "signal: killed")
}

// With the default ReplyTimeout (5s), a plugin that hangs inside an
// indefinite Wait is noticed and killed within a second: the deadline
// follows the measured exchange time, and the wait is sliced.
func TestHungPluginNoticedWithinASecond(t *testing.T) {
	sel := launch(t, Spec{Name: "testpoll"})
	evs := make([]sdk.Event, 1)
	// Some exchanges to measure.
	for range 20 {
		_, err := sel.Wait(evs, 0)
		require.NoError(t, err)
	}
	st, err := sel.Stats(context.Background())
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(st.Pid, syscall.SIGSTOP))
	t0 := time.Now()
	gone := make(chan time.Duration, 1)
	go func() {
		for alive(st.Pid) {
			time.Sleep(2 * time.Millisecond)
		}
		gone <- time.Since(t0)
	}()
	n, err := sel.Wait(evs, -1)
	require.NoError(t, err, "replaced, not failed")
	assert.Zero(t, n)
	noticed := <-gone
	t.Logf("hung plugin killed %v after it stopped; Wait returned after %v", noticed, time.Since(t0))
	assert.Less(t, noticed, time.Second, "noticed and killed within a second")
	for sel.down {
		_, err := sel.Wait(evs, 100*time.Millisecond)
		require.NoError(t, err)
	}
	t.Logf("replacement adopted %v after the plugin stopped", time.Since(t0))
	after, err := sel.Stats(context.Background())
	require.NoError(t, err)
	assert.NotEqual(t, st.Pid, after.Pid)
	assert.Equal(t, 1, after.Restarts)
}

func TestProtocolViolationIsAFailure(t *testing.T) {
	sel := launch(t, Spec{Name: "garbage", MaxRestarts: -1})
	_, err := sel.Wait(make([]sdk.Event, 1), time.Second)
	require.ErrorIs(t, err, sdk.ErrPluginFailed)
	assert.ErrorIs(t, err, dataplane.ErrProtocol)
	assert.Contains(t, err.Error(), "0 restarts in all")
}

func socketDirOf(t *testing.T, pid int) string {
	t.Helper()
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	require.NoError(t, err)
	for _, kv := range strings.Split(string(env), "\x00") {
		if v, ok := strings.CutPrefix(kv, envSocketDirToMake+"="); ok {
			return v
		}
	}
	t.Fatalf("plugin %d has no %s", pid, envSocketDir)
	return ""
}

func TestCloseIsGraceful(t *testing.T) {
	sel := launch(t, Spec{Name: "testpoll"})
	p := sel.proc
	dir := socketDirOf(t, p.pid)
	_, err := os.Stat(dir)
	assert.ErrorIs(t, err, os.ErrNotExist, "socket directory removed once the host connected")
	require.NoError(t, sel.Close())
	<-p.run.exited
	assert.Equal(t, 0, p.run.state.ExitCode(), "exited by itself after Shutdown")
	assert.ErrorIs(t, sel.Close(), sdk.ErrSelectorClosed)
	_, err = sel.Wait(make([]sdk.Event, 1), 0)
	assert.ErrorIs(t, err, sdk.ErrSelectorClosed)
}

func TestCloseReleasesABlockedWait(t *testing.T) {
	sel := launch(t, Spec{Name: "testpoll"})
	done := make(chan error, 1)
	go func() {
		_, err := sel.Wait(make([]sdk.Event, 1), -1)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, sel.Close())
	select {
	case err := <-done:
		assert.ErrorIs(t, err, sdk.ErrSelectorClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the Wait")
	}
}

func TestCloseKillsAPluginThatDoesNotStop(t *testing.T) {
	sel := launch(t, Spec{Name: "testpoll", StopTimeout: 200 * time.Millisecond})
	st, err := sel.Stats(context.Background())
	require.NoError(t, err)
	// A stopped process answers nothing, not even Shutdown.
	require.NoError(t, syscall.Kill(st.Pid, syscall.SIGSTOP))
	start := time.Now()
	require.NoError(t, sel.Close())
	took := time.Since(start)
	assert.False(t, alive(st.Pid))
	assert.Less(t, took, 5*time.Second, "Close is bounded by StopTimeout plus cleanup")
	assert.GreaterOrEqual(t, took, 200*time.Millisecond, "it waited for the graceful stop first")
}

func TestSHA256Pinning(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	f, err := os.Open(exe)
	require.NoError(t, err)
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	require.NoError(t, err)

	sel := launch(t, Spec{Name: "testpoll", SHA256: hex.EncodeToString(h.Sum(nil))})
	require.NoError(t, sel.Close())

	_, err = Launch(context.Background(), sdk.Selectors, Spec{Name: "testpoll", SHA256: strings.Repeat("00", 32)})
	require.ErrorIs(t, err, ErrChecksum)
	assert.Contains(t, err.Error(), exe)

	_, err = Launch(context.Background(), sdk.Selectors, Spec{Name: "testpoll", SHA256: "not-hex"})
	assert.ErrorContains(t, err, "not a hex SHA-256")
}

func TestConfigure(t *testing.T) {
	// log_level is the SDK's; name goes to testPoll's Configure, before the
	// data-plane hello reports the capabilities.
	sel := launch(t, Spec{Name: "testpoll", Config: map[string]string{"log_level": "debug", "name": "renamed"}})
	assert.Equal(t, "renamed", sel.Capabilities().Name)
	require.NoError(t, sel.Close())

	_, err := Launch(context.Background(), sdk.Selectors, Spec{Name: "testpoll", Config: map[string]string{"name": ""}})
	assert.ErrorContains(t, err, `setting name="": want name=NONEMPTY`)
	// A selector that is not a Configurer takes no settings but the SDK's.
	_, err = Launch(context.Background(), sdk.Selectors, Spec{Name: "crashloop", Config: map[string]string{"frobnicate": "1"}})
	assert.ErrorContains(t, err, `has no setting "frobnicate"`)
}

func TestLaunchErrors(t *testing.T) {
	for _, c := range []struct {
		spec Spec
		want string
	}{
		{Spec{Name: "nosuch"}, `no bundled selector "nosuch"`},
		{Spec{}, "Name and Spec.Path are both empty"},
		{Spec{Path: "/nonexistent/plugin"}, "fork/exec /nonexistent/plugin: no such file"},
		{Spec{Path: "/bin/true"}, "did not complete the go-plugin handshake"},
	} {
		_, err := Launch(context.Background(), sdk.Selectors, c.spec)
		assert.ErrorContains(t, err, c.want, "%+v", c.spec)
	}
}

// TestHostKilled: a host that dies by SIGKILL leaves neither its plugin
// process nor the plugin's socket directory behind; nor does a SIGKILL of
// the whole process group, host and plugin together, when neither can
// clean up after itself.
func TestHostKilled(t *testing.T) {
	for _, group := range []bool{false, true} {
		t.Run(map[bool]string{false: "host", true: "process-group"}[group], func(t *testing.T) {
			exe, err := os.Executable()
			require.NoError(t, err)
			tmp := t.TempDir()
			cmd := exec.Command(exe)
			cmd.Env = append(os.Environ(), envTestHost+"=1", "TMPDIR="+tmp)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			stdin, err := cmd.StdinPipe()
			require.NoError(t, err)
			defer stdin.Close()
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = os.Stderr
			require.NoError(t, cmd.Start())
			line, err := bufio.NewReader(stdout).ReadString('\n')
			require.NoError(t, err)
			var pid int
			var dir string
			_, err = fmt.Sscanf(strings.TrimSpace(line), "pid=%d dir=%s", &pid, &dir)
			require.NoError(t, err, "helper said %q", line)
			require.True(t, alive(pid))
			require.True(t, strings.HasPrefix(dir, tmp), "socket dir %s under the host's TMPDIR", dir)
			_, err = os.Stat(dir)
			require.ErrorIs(t, err, os.ErrNotExist, "the socket directory is gone once the host has connected")

			if group {
				require.NoError(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL))
			} else {
				require.NoError(t, cmd.Process.Kill())
			}
			_ = cmd.Wait()
			killed := time.Now()
			deadline := killed.Add(5 * time.Second)
			for alive(pid) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			assert.False(t, alive(pid), "plugin %d outlived its host", pid)
			t.Logf("plugin gone %v after its host was killed", time.Since(killed))
			left, _ := os.ReadDir(tmp)
			assert.Empty(t, left, "nothing left in the host's TMPDIR")
		})
	}
}

// goBuild builds a plugin executable once per test binary, into a
// directory of its own (so Discover sees only it) that TestMain removes.
func goBuild(name, pkg string) func() (string, error) {
	return sync.OnceValues(func() (string, error) {
		dir, err := os.MkdirTemp("", "loopkernel-plugin-test-")
		if err != nil {
			return "", err
		}
		cleanups = append(cleanups, func() { os.RemoveAll(dir) })
		path := filepath.Join(dir, "loopkernel-plugin-"+name)
		out, err := exec.Command("go", "build", "-o", path, pkg).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
		return path, nil
	})
}

var (
	examplePlugin = goBuild("example", "../../examples/selector-plugin")
	brokenPlugin  = goBuild("broken", "../../conformance/internal/brokenplugin")
)

func buildPlugin(t *testing.T, build func() (string, error)) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a plugin executable")
	}
	path, err := build()
	require.NoError(t, err)
	return path
}

func TestBrokenPluginServes(t *testing.T) {
	path := buildPlugin(t, brokenPlugin)
	sel, err := Open(context.Background(), sdk.Selectors, "plugin:"+path, Options{Template: Spec{Logger: testLogger(t)}})
	require.NoError(t, err)
	defer sel.Close()
	assert.Equal(t, "broken", sel.Capabilities().Name)
}

func TestThirdPartyExample(t *testing.T) {
	path := buildPlugin(t, examplePlugin)
	dir := filepath.Dir(path)

	found, err := Discover(dir)
	require.NoError(t, err)
	require.Len(t, found, 1)
	assert.Equal(t, Spec{Name: "example", Path: path}, found[0])

	for _, spec := range []string{"plugin:" + path, "plugin:example"} {
		t.Run(spec, func(t *testing.T) {
			sel, err := Open(context.Background(), sdk.Selectors, spec, Options{PluginDir: dir, Template: Spec{Logger: testLogger(t)}})
			require.NoError(t, err)
			defer sel.Close()
			assert.Equal(t, "example", sel.Capabilities().Name)
			r, w := pipe(t)
			_, err = unix.Write(w, []byte("x"))
			require.NoError(t, err)
			tok := sdk.MakeToken(3, 1)
			require.NoError(t, sel.Register(r, tok, sdk.Read))
			assert.Equal(t, sdk.Read, waitFor(t, sel, tok))
		})
	}
}

func TestResolve(t *testing.T) {
	f, err := Resolve(sdk.Selectors, "testpoll", Options{})
	require.NoError(t, err)
	sel, err := f()
	require.NoError(t, err)
	_, inproc := sel.(*testPoll)
	assert.True(t, inproc, "a bare name is in-process")
	require.NoError(t, sel.Close())

	f, err = Resolve(sdk.Selectors, "plugin:testpoll", Options{Template: Spec{Logger: testLogger(t)}})
	require.NoError(t, err)
	sel, err = f()
	require.NoError(t, err)
	_, oop := sel.(*RemoteSelector)
	assert.True(t, oop, "plugin:NAME is out-of-process")
	require.NoError(t, sel.Close())

	for spec, want := range map[string]string{
		"nosuch":            "unknown back-end",
		"plugin:":           "needs a name or a path",
		"plugin:nosuch":     "no plugin directory",
		"plugin:/nonexist/": "no such file",
	} {
		_, err := Resolve(sdk.Selectors, spec, Options{})
		assert.ErrorContains(t, err, want, spec)
	}
	_, err = Resolve(sdk.Selectors, "plugin:nosuch", Options{PluginDir: t.TempDir()})
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestDiscoverSkipsNonPlugins(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode))
	}
	write("loopkernel-plugin-b", 0o755)
	write("loopkernel-plugin-a", 0o755)
	write("loopkernel-plugin-noexec", 0o644)
	write("other", 0o755)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "loopkernel-plugin-dir"), 0o755))
	found, err := Discover(dir)
	require.NoError(t, err)
	require.Len(t, found, 2)
	assert.Equal(t, "a", found[0].Name)
	assert.Equal(t, "b", found[1].Name)
	_, err = Discover(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestControlPlane(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	logger := hclog.New(&hclog.LoggerOptions{Name: "host", Level: hclog.Debug, Output: lockedWriter{&mu, &logs}})
	sel := launch(t, Spec{Name: "testpoll", Logger: logger})
	ctl := sel.proc.control
	ctx := context.Background()

	caps, err := ctl.Capabilities(ctx, &pb.CapabilitiesRequest{})
	require.NoError(t, err)
	assert.Equal(t, "testpoll", caps.Name)
	assert.True(t, caps.RegularFiles)
	assert.NotEmpty(t, caps.GetBuild().GetGoVersion())

	h, err := ctl.Health(ctx, &pb.HealthRequest{})
	require.NoError(t, err)
	assert.True(t, h.Serving)
	assert.Positive(t, h.UptimeNs)

	_, err = ctl.Handshake(ctx, &pb.HandshakeRequest{ControlVersion: controlVersion + 1, DataplaneVersion: dataplaneVersion})
	assert.ErrorContains(t, err, "speaks control v2")
	_, err = ctl.Handshake(ctx, &pb.HandshakeRequest{ControlVersion: controlVersion, DataplaneVersion: dataplaneVersion, PluginName: "other", Family: "selector"})
	assert.ErrorContains(t, err, `launched plugin "other" but this binary serves "testpoll"`)
	_, err = ctl.Handshake(ctx, &pb.HandshakeRequest{ControlVersion: controlVersion, DataplaneVersion: dataplaneVersion, PluginName: "testpoll", Family: "executor"})
	assert.ErrorContains(t, err, `as a executor but this process serves a selector`)
	hs, err := ctl.Handshake(ctx, &pb.HandshakeRequest{ControlVersion: controlVersion, DataplaneVersion: dataplaneVersion, PluginName: "testpoll", Family: "selector"})
	require.NoError(t, err)
	assert.Equal(t, []string{"selector"}, hs.Families, "a bundled plugin serves the one back-end it was started for")
	_, err = ctl.Configure(ctx, &pb.ConfigureRequest{Settings: map[string]string{"log_level": "loud"}})
	assert.ErrorContains(t, err, "log_level")

	require.NoError(t, sel.Close())
	mu.Lock()
	defer mu.Unlock()
	// The plugin's own hclog lines arrive through go-plugin under its name.
	assert.Contains(t, logs.String(), "host.testpoll: plugin serving: ")
	assert.Contains(t, logs.String(), "plugin build: family=selector plugin=testpoll backend=testpoll")
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
