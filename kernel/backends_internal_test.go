package kernel

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/loopkernel/loopkernel/sdk"
)

// A loop given no resolver in a program that registered none fails its
// lookups with an error that says what to do, rather than with a nil
// dereference.
func TestDefaultBackendMissing(t *testing.T) {
	_, err := defaultBackend(new(sdk.Registry[sdk.Resolver]), sdk.DefaultResolver)
	assert.ErrorIs(t, err, ErrNoBackend)
	assert.ErrorContains(t, err, `none is registered as "go"`)
}
