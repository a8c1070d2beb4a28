package sdk_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/sdk"
)

func TestRegistry(t *testing.T) {
	errMade := errors.New("made")
	f := func() (sdk.Resolver, error) { return nil, errMade }
	sdk.Resolvers.Register("registry-test-b", f)
	sdk.Resolvers.Register("registry-test-a", f)

	got, ok := sdk.Resolvers.Lookup("registry-test-b")
	require.True(t, ok)
	_, err := got()
	assert.ErrorIs(t, err, errMade)
	_, err = sdk.Resolvers.New("registry-test-a")
	assert.ErrorIs(t, err, errMade)
	_, ok = sdk.Resolvers.Lookup("registry-test-missing")
	assert.False(t, ok)
	_, err = sdk.Resolvers.New("registry-test-missing")
	assert.ErrorIs(t, err, sdk.ErrUnknownBackend)
	assert.ErrorContains(t, err, `no resolver back-end "registry-test-missing"`)

	names := sdk.Resolvers.Names()
	assert.IsNonDecreasing(t, names)
	assert.Subset(t, names, []string{"registry-test-a", "registry-test-b"})
	// Families are separate lists.
	assert.NotContains(t, sdk.Selectors.Names(), "registry-test-a")

	assert.PanicsWithValue(t, `sdk: resolver back-end "registry-test-a" registered twice`, func() { sdk.Resolvers.Register("registry-test-a", f) })
	assert.Panics(t, func() { sdk.Resolvers.Register("", f) })
	assert.Panics(t, func() { sdk.Resolvers.Register("registry-test-nil", nil) })
}
