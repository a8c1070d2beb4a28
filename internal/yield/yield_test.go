package yield

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func count(n int, tick func() bool) int {
	k := 0
	for range n {
		if tick() {
			k++
		}
	}
	return k
}

func TestTickClock(t *testing.T) {
	var y Ticker
	y.last = -Every // a fresh ticker: the interval has long passed
	tickN := func(n int) int { return count(n, y.TickClock) }
	assert.Equal(t, 0, tickN(MinTicks-1), "no yield before MinTicks polls")
	assert.Equal(t, 1, tickN(1), "the interval has long passed for a fresh ticker")
	assert.Equal(t, 0, tickN(3*MinTicks), "no yield within the interval, however many polls")
	y.last -= Every
	assert.Equal(t, 1, tickN(MinTicks), "once the interval has passed, the next clock read yields")
	assert.Equal(t, 0, tickN(MinTicks))
}

func TestTick(t *testing.T) {
	var y Ticker
	now := Every
	tick := func() bool { return y.Tick(now) }
	assert.Equal(t, 0, count(MinTicks-1, tick), "no yield before MinTicks polls")
	assert.Equal(t, 1, count(1, tick))
	assert.Equal(t, 0, count(10*MinTicks, tick), "no yield while the clock stands within the interval")
	now += Every
	assert.Equal(t, 1, count(1, tick), "polls counted while waiting for the interval still count")
}

func ExampleTicker() {
	var y Ticker
	for range 1000 {
		// ... one poll of a goroutine that never parks ...
		y.TickClock()
	}
}
