package dataplane

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestYielderPacesItsYields(t *testing.T) {
	var y yielder
	assert.True(t, y.tick(), "a fresh yielder yields at once")
	assert.False(t, y.tick(), "a second tick within the interval does not yield")
	y.last = y.last.Add(-yieldEvery)
	assert.True(t, y.tick(), "a tick once the interval has passed yields")
	assert.False(t, y.tick())
}
