package policy

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/sdk"
)

// --proactor and $LOOPKERNEL_PROACTOR put a completion back-end on any
// policy or take it off ("none"); NAME-plugin means plugin:NAME, passed
// through for an out-of-process placement to open; an unknown name fails
// at once, listing the known ones; the flag beats the environment.
func TestChooseProactor(t *testing.T) {
	for _, v := range []string{EnvVar, SelectorEnv, ProactorEnv} {
		t.Setenv(v, "")
	}
	p, err := Choose(Flags{Policy: "epoll", Proactor: "uring"})
	require.NoError(t, err)
	assert.Equal(t, "uring", p.Proactor)
	assert.Contains(t, p.Description, "proactor=uring")
	sel, _, _ := p.Backends()
	assert.Equal(t, "proactor:uring", sel)

	p, err = Choose(Flags{Policy: "uring", Proactor: ProactorNone})
	require.NoError(t, err)
	assert.Empty(t, p.Proactor, "none: back to the selector")
	assert.Equal(t, "epoll", p.Selector)

	for spec, want := range map[string]string{"uring-plugin": "plugin:uring", "plugin:uring": "plugin:uring", "plugin:/opt/p": "plugin:/opt/p"} {
		p, err = Choose(Flags{Proactor: spec})
		require.NoError(t, err, spec)
		assert.Equal(t, want, p.Proactor, spec)
	}

	_, err = Choose(Flags{Proactor: "urnig"})
	require.ErrorIs(t, err, sdk.ErrUnknownBackend)
	assert.ErrorContains(t, err, `--proactor "urnig"`)
	assert.ErrorContains(t, err, "uring]")
	assert.ErrorContains(t, err, ProactorNone)
	_, err = Choose(Flags{Proactor: "epoll-plugin"})
	require.ErrorIs(t, err, sdk.ErrUnknownBackend, "NAME-plugin only for a proactor NAME")

	t.Setenv(ProactorEnv, "uring")
	p, err = Choose(Flags{Policy: "poll"})
	require.NoError(t, err)
	assert.Equal(t, "uring", p.Proactor)
	p, err = Choose(Flags{Policy: "uring", Proactor: ProactorNone})
	require.NoError(t, err)
	assert.Empty(t, p.Proactor, "the flag beats the environment")
	t.Setenv(ProactorEnv, "bogus")
	_, err = Choose(Flags{})
	assert.ErrorContains(t, err, `$LOOPKERNEL_PROACTOR "bogus"`)
}

// A registered placement's prefix passes through as it is.
func TestChooseProactorPlacementPrefix(t *testing.T) {
	t.Setenv(ProactorEnv, "")
	const pre = "policy-test-placement:"
	RegisterProactorPlacement(pre, func(ctx context.Context, name string) (sdk.Driver, error) {
		return nil, fmt.Errorf("placement %s: %w", name, sdk.ErrUnsupported)
	})
	t.Cleanup(func() { proactorPlacements.Delete(pre) })
	p, err := Choose(Flags{Proactor: pre + "x"})
	require.NoError(t, err)
	assert.Equal(t, pre+"x", p.Proactor)
	_, err = p.NewEventLoop()
	require.ErrorIs(t, err, sdk.ErrUnsupported, "the placement opens it")
	assert.ErrorContains(t, err, "placement x")
}
