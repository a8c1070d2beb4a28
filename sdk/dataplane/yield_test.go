package dataplane

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestYielderPacesItsYields(t *testing.T) {
	var y yielder
	tickN := func(n int) (yields int) {
		for range n {
			if y.tick() {
				yields++
			}
		}
		return yields
	}
	assert.Equal(t, 0, tickN(yieldMinTicks-1), "no yield before yieldMinTicks exchanges")
	assert.Equal(t, 1, tickN(1), "the interval has long passed for a fresh yielder")
	assert.Equal(t, 0, tickN(3*yieldMinTicks), "no yield within the interval, however many exchanges")
	y.last = y.last.Add(-yieldEvery)
	assert.Equal(t, 1, tickN(yieldMinTicks), "once the interval has passed, the next clock read yields")
	assert.Equal(t, 0, tickN(yieldMinTicks))
}
