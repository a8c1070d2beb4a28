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
	f := func() (sdk.Selector, error) { return nil, errMade }
	sdk.Register("registry-test-b", f)
	sdk.Register("registry-test-a", f)

	got, ok := sdk.Lookup("registry-test-b")
	require.True(t, ok)
	_, err := got()
	assert.ErrorIs(t, err, errMade)
	_, ok = sdk.Lookup("registry-test-missing")
	assert.False(t, ok)

	names := sdk.Registered()
	assert.IsNonDecreasing(t, names)
	assert.Subset(t, names, []string{"registry-test-a", "registry-test-b"})

	assert.PanicsWithValue(t, `sdk.Register: back-end "registry-test-a" registered twice`, func() { sdk.Register("registry-test-a", f) })
	assert.Panics(t, func() { sdk.Register("", f) })
	assert.Panics(t, func() { sdk.Register("registry-test-nil", nil) })
}
