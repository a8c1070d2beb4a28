package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/driver/readiness"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/resolver"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// fresh resets the process-wide policy and current loop around a test, and
// closes whatever loop the test left current.
func fresh(t *testing.T) {
	t.Helper()
	reset := func() {
		state.Lock()
		l := state.loop
		state.current, state.loop = nil, nil
		state.Unlock()
		if l != nil && !l.IsRunning() {
			l.Close()
		}
	}
	reset()
	t.Cleanup(reset)
}

func runHello(t *testing.T, l *kernel.Loop) {
	t.Helper()
	ran := false
	_, err := l.CallSoon(func() { ran = true; l.Stop() })
	require.NoError(t, err)
	require.NoError(t, l.RunForever())
	assert.True(t, ran)
}

func TestBuiltinsAreRegistered(t *testing.T) {
	names := Names()
	assert.Contains(t, names, "epoll")
	assert.Contains(t, names, "poll")
	assert.IsNonDecreasing(t, names)
	assert.Contains(t, names, Default)
}

func TestEveryRegisteredPolicyBuildsAWorkingLoop(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			p, err := Lookup(name)
			require.NoError(t, err)
			assert.Equal(t, name, p.Name)
			assert.NotEmpty(t, p.Description)
			l, err := p.NewEventLoop()
			require.NoError(t, err)
			defer l.Close()
			runHello(t, l)
		})
	}
}

func TestPolicySelectsItsSelector(t *testing.T) {
	for _, name := range []string{"epoll", "poll"} {
		p, err := Lookup(name)
		require.NoError(t, err)
		l, err := p.NewEventLoop()
		require.NoError(t, err)
		assert.Equal(t, name, l.Driver().Capabilities().Backend)
		require.NoError(t, l.Close())
	}
}

func TestPluginPoliciesRunTheSelectorOutOfProcess(t *testing.T) {
	for _, name := range []string{"epoll-plugin", "poll-plugin"} {
		t.Run(name, func(t *testing.T) {
			p, err := Lookup(name)
			require.NoError(t, err)
			l, err := p.NewEventLoop()
			require.NoError(t, err)
			defer l.Close()
			ps, ok := loopSelector(l).(*plugin.RemoteSelector)
			require.True(t, ok, "selector is %T", loopSelector(l))
			assert.Equal(t, strings.TrimSuffix(name, "-plugin"), ps.Capabilities().Name)

			// Readiness really travels through the plugin.
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			require.NoError(t, err)
			defer unix.Close(fds[0])
			defer unix.Close(fds[1])
			var got string
			require.NoError(t, l.AddReader(fds[0], func() {
				buf := make([]byte, 16)
				n, err := unix.Read(fds[0], buf)
				if err == nil {
					got = string(buf[:n])
				}
				l.RemoveReader(fds[0])
				l.Stop()
			}))
			_, err = unix.Write(fds[1], []byte("abc"))
			require.NoError(t, err)
			require.NoError(t, l.RunForever())
			assert.Equal(t, "abc", got)

			st, err := ps.Stats(context.Background())
			require.NoError(t, err)
			assert.Positive(t, st.Waits, "the plugin counted the loop's waits")
		})
	}
}

var policyTestTriple = sdk.NewFunc("policy-test.triple", func(_ context.Context, x int) (int, error) { return 3 * x, nil })

// The resolver and executor families go out of process by the same spec
// forms as the selector: --resolver plugin:go and --executor
// plugin:goroutine put Go's resolver and the goroutine executor in plugin
// processes (this test binary re-executed), and the loop's lookups and
// registered functions travel there.
func TestResolverAndExecutorPlugins(t *testing.T) {
	for _, v := range []string{EnvVar, SelectorEnv, ResolverEnv, ExecutorEnv} {
		t.Setenv(v, "")
	}
	p, err := Choose(Flags{Resolver: "plugin:" + sdk.DefaultResolver, Executor: "plugin:" + sdk.DefaultExecutor})
	require.NoError(t, err)
	l, err := p.NewEventLoop()
	require.NoError(t, err)
	defer l.Close()
	assert.IsType(t, &plugin.RemoteResolver{}, sharedBackend(l))
	assert.IsType(t, &plugin.RemoteExecutor{}, l.FuncExecutor())

	task, err := kernel.CreateTask(l, func(co *kernel.Co) (string, error) {
		ai, err := l.Getaddrinfo("localhost", "80", sdk.AddrinfoHints{Family: unix.AF_INET, SockType: unix.SOCK_STREAM})
		if err != nil {
			return "", err
		}
		addrs, err := ai.Await(co)
		if err != nil {
			return "", err
		}
		f, err := kernel.CallFunc(l, policyTestTriple, 14)
		if err != nil {
			return "", err
		}
		n, err := f.Await(co)
		return fmt.Sprintf("%v %d", addrs[0].Addr, n), err
	})
	require.NoError(t, err)
	require.NoError(t, l.RunUntilComplete(task))
	got, _ := task.Result()
	assert.Equal(t, "127.0.0.1:80 42", got)
}

// TestPluginPolicySurvivesItsPluginBeingKilled: the supervisor restarts a
// killed plugin and the loop goes on receiving readiness through the new one.
func TestPluginPolicySurvivesItsPluginBeingKilled(t *testing.T) {
	p, err := Lookup("epoll-plugin")
	require.NoError(t, err)
	l, err := p.NewEventLoop()
	require.NoError(t, err)
	defer l.Close()
	ps := loopSelector(l).(*plugin.RemoteSelector)
	before, err := ps.Stats(context.Background())
	require.NoError(t, err)

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	var got []string
	require.NoError(t, l.AddReader(fds[0], func() {
		buf := make([]byte, 16)
		if n, err := unix.Read(fds[0], buf); err == nil {
			got = append(got, string(buf[:n]))
		}
		l.Stop()
	}))
	_, err = unix.Write(fds[1], []byte("one"))
	require.NoError(t, err)
	require.NoError(t, l.RunForever())

	require.NoError(t, unix.Kill(before.Pid, unix.SIGKILL))
	// Written while no plugin is alive; level-triggered readiness means the
	// replacement reports it.
	_, err = unix.Write(fds[1], []byte("two"))
	require.NoError(t, err)
	require.NoError(t, l.RunForever())
	assert.Equal(t, []string{"one", "two"}, got)

	after, err := ps.Stats(context.Background())
	require.NoError(t, err)
	assert.NotEqual(t, before.Pid, after.Pid)
	assert.Equal(t, 1, after.Restarts)
}

// sharedBackend is the back-end behind l's handle on its policy's shared
// resolver (or l's resolver itself, if it is no such handle).
func sharedBackend(l *kernel.Loop) sdk.Resolver {
	if h, ok := l.Resolver().(interface{ Unwrap() sdk.Resolver }); ok {
		return h.Unwrap()
	}
	return l.Resolver()
}

// closingResolver is Go's resolver with a Close that counts, registered
// under its own name so a policy can name it.
type closingResolver struct {
	sdk.Resolver
	closed *atomic.Int32
}

func (c closingResolver) Close() error { c.closed.Add(1); return nil }

var testResolverClosed atomic.Int32

func init() {
	sdk.Resolvers.Register("policy-test", func() (sdk.Resolver, error) {
		return closingResolver{resolver.New(nil), &testResolverClosed}, nil
	})
}

func TestResolverSpec(t *testing.T) {
	p := &Policy{Name: "with-resolver", Selector: "epoll", Resolver: "policy-test"}
	l, err := p.NewEventLoop()
	require.NoError(t, err)
	assert.IsType(t, closingResolver{}, sharedBackend(l))
	before := testResolverClosed.Load()
	require.NoError(t, l.Close())
	assert.Equal(t, before+1, testResolverClosed.Load(), "the loop owns the resolver its policy opened")

	d, err := Lookup(Default)
	require.NoError(t, err)
	l2, err := d.NewEventLoop()
	require.NoError(t, err)
	defer l2.Close()
	assert.IsType(t, &resolver.Resolver{}, sharedBackend(l2), "no Resolver: the registered default")

	p.Resolver = "no-such-resolver"
	_, err = p.NewEventLoop()
	assert.ErrorIs(t, err, sdk.ErrUnknownBackend)
}

func TestChooseOverridesPerFamily(t *testing.T) {
	for _, v := range []string{EnvVar, SelectorEnv, ResolverEnv, ExecutorEnv} {
		t.Setenv(v, "")
	}
	p, err := Choose(Flags{Policy: "epoll", Selector: "poll", Resolver: "policy-test"})
	require.NoError(t, err)
	sel, res, ex := p.Backends()
	assert.Equal(t, []string{"poll", "policy-test", sdk.DefaultExecutor}, []string{sel, res, ex})
	assert.Contains(t, p.Description, "selector=poll")

	// The environment fills in what the flags leave empty; a flag wins.
	t.Setenv(SelectorEnv, "poll")
	t.Setenv(ExecutorEnv, sdk.DefaultExecutor)
	p, err = Choose(Flags{Policy: "epoll"})
	require.NoError(t, err)
	sel, res, ex = p.Backends()
	assert.Equal(t, []string{"poll", sdk.DefaultResolver, sdk.DefaultExecutor}, []string{sel, res, ex})
	p, err = Choose(Flags{Policy: "epoll", Selector: "epoll"})
	require.NoError(t, err)
	assert.Equal(t, "epoll", p.Selector)

	// A mistyped name fails at once, naming where it came from and what exists.
	_, err = Choose(Flags{Resolver: "dns-typo"})
	require.ErrorIs(t, err, sdk.ErrUnknownBackend)
	assert.ErrorContains(t, err, `--resolver "dns-typo"`)
	assert.ErrorContains(t, err, sdk.DefaultResolver)
	t.Setenv(ExecutorEnv, "pool-typo")
	_, err = Choose(Flags{})
	assert.ErrorContains(t, err, `$LOOPKERNEL_EXECUTOR "pool-typo"`)
}

func TestLookupUnknownListsKnownNames(t *testing.T) {
	_, err := Lookup("kqueue")
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrUnknownPolicy))
	assert.Contains(t, err.Error(), `"kqueue"`)
	for _, n := range Names() {
		assert.Contains(t, err.Error(), n)
	}
}

func TestLookupReturnsACopy(t *testing.T) {
	p, err := Lookup("poll")
	require.NoError(t, err)
	p.Selector = "epoll"
	p.Description = "changed"
	again, err := Lookup("poll")
	require.NoError(t, err)
	assert.Equal(t, "poll", again.Selector)
	assert.NotEqual(t, "changed", again.Description)
}

func TestRegisterRejectsProgrammingErrors(t *testing.T) {
	assert.Panics(t, func() { Register(Policy{Name: "", Selector: "epoll"}) })
	assert.Panics(t, func() { Register(Policy{Name: "x-no-selector"}) })
	assert.Panics(t, func() { Register(Policy{Name: "plugin:foo", Selector: "epoll"}) })
	assert.Panics(t, func() { Register(Policy{Name: "epoll", Selector: "epoll"}) }, "duplicate")
	assert.NotContains(t, Names(), "x-no-selector")
}

func TestRegisterCustomPolicyWithExecutorAndOptions(t *testing.T) {
	var submitted atomic.Int32 // per run; the registered executor reads the current one
	countingSubmitted.Store(&submitted)
	registerCountingOnce.Do(func() {
		Register(Policy{
			Name:        "test-counting-executor",
			Description: "poll with a counting executor, debug on",
			Selector:    "poll",
			DefaultExecutor: func() kernel.Executor {
				return countingExecutor{kernel.NewGoExecutor(1), countingSubmitted.Load()}
			},
			Options: []kernel.Option{kernel.WithDebug(true)},
		})
	})
	assert.Contains(t, Names(), "test-counting-executor")
	p, err := Lookup("test-counting-executor")
	require.NoError(t, err)
	l, err := p.NewEventLoop()
	require.NoError(t, err)
	defer l.Close()
	assert.True(t, l.GetDebug())
	assert.Equal(t, "poll", l.Driver().Capabilities().Backend)

	f, err := kernel.RunInExecutor(l, nil, func(context.Context) (int, error) { return 42, nil })
	require.NoError(t, err)
	require.NoError(t, l.RunUntilComplete(f))
	v, err := f.Result()
	require.NoError(t, err)
	assert.Equal(t, 42, v)
	assert.Equal(t, int32(1), submitted.Load())
}

// Registration is once per process, but go test -count=N runs tests N times.
var (
	registerCountingOnce sync.Once
	countingSubmitted    atomic.Pointer[atomic.Int32]
)

type countingExecutor struct {
	kernel.Executor
	n *atomic.Int32
}

func (c countingExecutor) Submit(fn func()) error {
	c.n.Add(1)
	return c.Executor.Submit(fn)
}

func TestSelectPrecedence(t *testing.T) {
	t.Setenv(EnvVar, "")
	p, err := Select("")
	require.NoError(t, err)
	assert.Equal(t, Default, p.Name, "nothing set: default")

	t.Setenv(EnvVar, "poll")
	p, err = Select("")
	require.NoError(t, err)
	assert.Equal(t, "poll", p.Name, "env beats default")
	p, err = FromEnv()
	require.NoError(t, err)
	assert.Equal(t, "poll", p.Name)

	p, err = Select("epoll")
	require.NoError(t, err)
	assert.Equal(t, "epoll", p.Name, "flag beats env")
}

func TestSelectUnknown(t *testing.T) {
	t.Setenv(EnvVar, "nope")
	_, err := FromEnv()
	require.ErrorIs(t, err, ErrUnknownPolicy)
	assert.Contains(t, err.Error(), EnvVar, "says the bad name came from the environment")

	_, err = Select("bogus")
	require.ErrorIs(t, err, ErrUnknownPolicy)
	assert.Contains(t, err.Error(), "bogus")
	assert.NotContains(t, err.Error(), EnvVar)
}

func TestSelectAdHocPluginSpec(t *testing.T) {
	p, err := Select("plugin:/nonexistent/loopkernel-plugin-x")
	require.NoError(t, err)
	assert.Equal(t, "plugin:/nonexistent/loopkernel-plugin-x", p.Selector)
	_, err = p.NewEventLoop()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "/nonexistent/loopkernel-plugin-x")

	_, err = Select("plugin:")
	require.ErrorIs(t, err, ErrUnknownPolicy, "an empty plugin spec is not a policy")
}

func TestGetEventLoopCreatesOnceAndSetEventLoopReplaces(t *testing.T) {
	fresh(t)
	l1, err := GetEventLoop()
	require.NoError(t, err)
	l2, err := GetEventLoop()
	require.NoError(t, err)
	assert.Same(t, l1, l2)
	assert.Equal(t, Default, l1.Driver().Capabilities().Backend)

	mine, err := NewEventLoop()
	require.NoError(t, err)
	assert.NotSame(t, l1, mine)
	SetEventLoop(mine)
	got, err := GetEventLoop()
	require.NoError(t, err)
	assert.Same(t, mine, got)
	require.NoError(t, l1.Close())

	SetEventLoop(nil)
	l3, err := GetEventLoop()
	require.NoError(t, err)
	assert.NotSame(t, mine, l3)
	require.NoError(t, mine.Close())
}

func TestGetEventLoopReturnsTheRunningLoop(t *testing.T) {
	fresh(t)
	current, err := GetEventLoop()
	require.NoError(t, err)

	other, err := NewEventLoop()
	require.NoError(t, err)
	defer other.Close()
	var inside *kernel.Loop
	_, err = other.CallSoon(func() {
		inside, err = GetEventLoop()
		other.Stop()
	})
	require.NoError(t, err)
	require.NoError(t, other.RunForever())
	require.NoError(t, err)
	assert.Same(t, other, inside, "inside a callback: the running loop")

	after, err := GetEventLoop()
	require.NoError(t, err)
	assert.Same(t, current, after, "outside: the current loop again")
}

func TestSetEventLoopPolicySwitchesAndForgetsTheCurrentLoop(t *testing.T) {
	fresh(t)
	assert.Equal(t, Default, GetEventLoopPolicy().Name)
	before, err := GetEventLoop()
	require.NoError(t, err)
	defer before.Close()

	p, err := Lookup("poll")
	require.NoError(t, err)
	SetEventLoopPolicy(p)
	p.Selector = "epoll" // the caller's copy; the policy in force must not change
	assert.Equal(t, "poll", GetEventLoopPolicy().Name)
	assert.Equal(t, "poll", GetEventLoopPolicy().Selector)

	l, err := GetEventLoop()
	require.NoError(t, err)
	assert.NotSame(t, before, l)
	assert.Equal(t, "poll", l.Driver().Capabilities().Backend)
	runHello(t, l)

	n, err := NewEventLoop()
	require.NoError(t, err)
	assert.Equal(t, "poll", n.Driver().Capabilities().Backend)
	require.NoError(t, n.Close())

	SetEventLoopPolicy(nil)
	assert.Equal(t, Default, GetEventLoopPolicy().Name)
	assert.False(t, before.IsClosed(), "switching policy does not close loops it handed out")
	require.NoError(t, l.Close())

	assert.Panics(t, func() { SetEventLoopPolicy(&Policy{Name: "empty"}) })
}

func TestGetEventLoopFailsCleanlyWhenThePolicyCannotOpenItsSelector(t *testing.T) {
	fresh(t)
	SetEventLoopPolicy(&Policy{Name: "broken", Selector: "no-such-backend"})
	_, err := GetEventLoop()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "broken")
	assert.Contains(t, err.Error(), "no-such-backend")
	_, err = GetEventLoop() // no half-made loop was kept
	require.Error(t, err)
}

func TestConcurrentUse(t *testing.T) {
	fresh(t)
	var wg sync.WaitGroup
	loops := make([]*kernel.Loop, 16)
	for i := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = Names()
			_, _ = Lookup("poll")
			_ = GetEventLoopPolicy()
			l, err := GetEventLoop()
			assert.NoError(t, err)
			loops[i] = l
		}()
	}
	wg.Wait()
	for _, l := range loops[1:] {
		assert.Same(t, loops[0], l, "one current loop for every goroutine")
	}
}

// A policy's own functions run while GetEventLoop builds the loop; they may
// use the package (this deadlocked when the state lock was held meanwhile).
func TestPolicyFunctionsMayUseThePackage(t *testing.T) {
	fresh(t)
	var seen []string
	SetEventLoopPolicy(&Policy{
		Name:     "reentrant",
		Selector: "epoll",
		DefaultExecutor: func() kernel.Executor {
			seen = Names()
			_ = GetEventLoopPolicy()
			return kernel.NewGoExecutor(1)
		},
	})
	l, err := GetEventLoop()
	require.NoError(t, err)
	assert.Contains(t, seen, Default)
	again, err := GetEventLoop()
	require.NoError(t, err)
	assert.Same(t, l, again)
}

// loopSelector is the selector under a loop built by a selector policy.
func loopSelector(l *kernel.Loop) sdk.Selector { return l.Driver().(*readiness.Driver).Selector() }

// --plugin-fallback and $LOOPKERNEL_PLUGIN_FALLBACK turn Policy.PluginFallback
// on; each family's plugin then falls back to its in-process twin, or to
// the family's default when it has none.
func TestPluginFallback(t *testing.T) {
	t.Setenv(PluginFallbackEnv, "")
	p, err := Choose(Flags{Policy: "epoll-plugin"})
	require.NoError(t, err)
	assert.False(t, p.PluginFallback)

	p, err = Choose(Flags{Policy: "epoll-plugin", PluginFallback: true})
	require.NoError(t, err)
	assert.True(t, p.PluginFallback)
	assert.Contains(t, p.Description, "plugin-fallback")

	t.Setenv(PluginFallbackEnv, "1")
	p, err = Choose(Flags{Policy: "poll-plugin"})
	require.NoError(t, err)
	assert.True(t, p.PluginFallback)

	t.Setenv(PluginFallbackEnv, "maybe")
	_, err = Choose(Flags{Policy: "poll-plugin"})
	assert.ErrorContains(t, err, PluginFallbackEnv)

	for _, c := range []struct {
		on         bool
		spec, want string
	}{
		{true, "plugin:poll", "poll"},
		{true, "plugin:thirdparty", Default},
		{true, "plugin:/opt/x/loopkernel-plugin-poll", Default},
		{true, "poll", ""},
		{false, "plugin:poll", ""},
	} {
		assert.Equal(t, c.want, fallbackFor(c.on, sdk.Selectors, c.spec, Default), "%+v", c)
	}
	assert.Equal(t, sdk.DefaultExecutor, fallbackFor(true, sdk.Executors, "plugin:x", sdk.DefaultExecutor))
}
