package policy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/kernel"
)

// Inside a task's coroutine, which runs on a goroutine of its own,
// GetEventLoop is the loop running the task, before and after the task
// suspends, never a new loop (asyncio.get_event_loop in a coroutine; under a
// plugin policy a new loop would also start a second plugin process).
func TestGetEventLoopInsideATask(t *testing.T) {
	fresh(t)
	l, err := NewEventLoop()
	require.NoError(t, err)
	defer l.Close()
	var before, after *kernel.Loop
	task, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
		var err error
		if before, err = GetEventLoop(); err != nil {
			return struct{}{}, err
		}
		if err := co.Sleep(time.Millisecond); err != nil {
			return struct{}{}, err
		}
		after, err = GetEventLoop()
		return struct{}{}, err
	})
	require.NoError(t, err)
	require.NoError(t, l.RunUntilComplete(task))
	assert.Same(t, l, before, "inside a task: the running loop")
	assert.Same(t, l, after, "inside a task that resumed: the running loop")
}
