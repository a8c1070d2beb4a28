package policy

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/driver/completion"
	"github.com/loopkernel/loopkernel/driver/readiness"
	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/plugins/proactor"
	"github.com/loopkernel/loopkernel/sdk"
)

// refusedProactor is a proactor back-end refused as io_uring is under
// Docker's default seccomp profile.
const refusedProactor = "policy-test-refused"

func init() {
	sdk.Proactors.Register(refusedProactor, func() (sdk.Proactor, error) {
		return nil, fmt.Errorf("%w: io_uring_setup: operation not permitted (EPERM) (test); use the readiness policy \"epoll\" instead", proactor.ErrRefused)
	})
}

// Without the fallback a refused proactor fails the loop, saying why and
// naming the epoll policy and the switch; with it (flag or environment)
// every loop runs on the policy's selector and the process logs exactly
// one warning.
func TestProactorFallback(t *testing.T) {
	for _, v := range []string{ProactorEnv, ProactorFallbackEnv} {
		t.Setenv(v, "")
	}
	var logged bytes.Buffer
	real := proactorLogger
	proactorLogger = func() hclog.Logger {
		return hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: &logged})
	}
	t.Cleanup(func() { proactorLogger = real; fellBack.Delete(refusedProactor) })

	p, err := Choose(Flags{Policy: "poll", Proactor: refusedProactor})
	require.NoError(t, err)
	assert.False(t, p.ProactorFallback)
	_, err = p.NewEventLoop()
	require.ErrorIs(t, err, proactor.ErrRefused)
	assert.ErrorContains(t, err, `policy "epoll"`)
	assert.ErrorContains(t, err, "--proactor-fallback")
	assert.ErrorContains(t, err, `selector "poll"`)
	assert.Empty(t, logged.String())

	t.Setenv(ProactorFallbackEnv, "1")
	p, err = Choose(Flags{Policy: "poll", Proactor: refusedProactor})
	require.NoError(t, err)
	assert.True(t, p.ProactorFallback)
	assert.Contains(t, p.Description, "proactor-fallback")
	for range 3 {
		l, err := p.NewEventLoop()
		require.NoError(t, err)
		d, ok := l.Driver().(*readiness.Driver)
		require.True(t, ok, "on the selector: %T", l.Driver())
		assert.Equal(t, "poll", d.Selector().Capabilities().Name)
		runHello(t, l)
		l.Close()
	}
	assert.Equal(t, 1, strings.Count(logged.String(), "[WARN]"), logged.String())
	assert.Contains(t, logged.String(), refusedProactor)
	assert.Contains(t, logged.String(), "operation not permitted")

	t.Setenv(ProactorFallbackEnv, "perhaps")
	_, err = Choose(Flags{Policy: "poll"})
	assert.ErrorContains(t, err, ProactorFallbackEnv)
}

// Other failures are never hidden by the fallback; an out-of-process spec
// with no placement in the binary says so.
func TestProactorFallbackOnlyForRefusal(t *testing.T) {
	t.Setenv(ProactorEnv, "")
	t.Setenv(ProactorFallbackEnv, "")
	p := &Policy{Name: "t", Selector: "epoll", Proactor: "no-such-proactor", ProactorFallback: true}
	_, err := p.NewEventLoop()
	require.ErrorIs(t, err, sdk.ErrUnknownBackend)
	if !placed("plugin:uring") {
		p.Proactor = "plugin:uring"
		_, err = p.NewEventLoop()
		require.ErrorIs(t, err, sdk.ErrUnknownBackend)
		assert.ErrorContains(t, err, "no out-of-process proactor placement")
	}
}

// A proactor that opens gives the loop the completion driver.
func TestProactorPolicyRunsOnCompletionDriver(t *testing.T) {
	testkit.NeedUring(t)
	p, err := Choose(Flags{Policy: "epoll", Proactor: "uring", ProactorFallback: true})
	require.NoError(t, err)
	l, err := p.NewEventLoop()
	require.NoError(t, err)
	defer l.Close()
	_, ok := l.Driver().(*completion.Driver)
	assert.True(t, ok, "%T", l.Driver())
	runHello(t, l)
}
