package kernel_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/sdk"
)

// slotStarter is a CallStarter with a fixed number of slots, in process:
// a started call runs on a goroutine and signals an eventfd when it ends,
// which frees its slot once Poll has read it. Calls that fall back to Call
// are counted.
type slotStarter struct {
	mu       sync.Mutex
	free     int
	fallback atomic.Int32
}

func (s *slotStarter) Call(ctx context.Context, fn string, arg []byte) ([]byte, error) {
	s.fallback.Add(1)
	return sdk.RunFunc(ctx, fn, arg)
}

func (s *slotStarter) Close() error { return nil }

func (s *slotStarter) StartCall(ctx context.Context, fn string, arg []byte) (sdk.StartedCall, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.free == 0 {
		return nil, false, fmt.Errorf("slots: %w", sdk.ErrWouldWait)
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, false, err
	}
	s.free--
	c := &slotCall{s: s, fd: fd}
	go func() {
		c.res, c.err = sdk.RunFunc(ctx, fn, arg)
		_, _ = unix.Write(fd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}()
	return c, true, nil
}

type slotCall struct {
	s   *slotStarter
	fd  int
	res []byte
	err error
}

func (c *slotCall) Fd() int { return c.fd }

func (c *slotCall) Poll() ([]byte, error, bool) {
	var b [8]byte
	if _, err := unix.Read(c.fd, b[:]); err != nil {
		return nil, nil, false
	}
	unix.Close(c.fd)
	c.s.mu.Lock()
	c.s.free++
	c.s.mu.Unlock()
	return c.res, c.err, true
}

func (c *slotCall) Abandon() {
	go func() {
		fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
		_, _ = unix.Poll(fds, -1)
		c.Poll()
	}()
}

// Calls beyond the executor's free slots wait on the loop and start as the
// started ones end: none goes to a goroutine and Call.
func TestCallFuncStartsWaitingCallsOnTheLoop(t *testing.T) {
	l := rsLoop(t)
	ex := &slotStarter{free: 2}
	l.SetFuncExecutor(ex)
	task, err := kernel.CreateTask(l, func(co *kernel.Co) ([]int, error) {
		var fs []kernel.AwaitableOf[int]
		for i := range 32 {
			f, err := kernel.CallFunc(l, beSquare, i)
			if err != nil {
				return nil, err
			}
			fs = append(fs, f)
		}
		return kernel.Gather(co, fs...)
	})
	require.NoError(t, err)
	require.NoError(t, l.RunUntilComplete(task))
	got, err := task.Result()
	require.NoError(t, err)
	for i, v := range got {
		assert.Equal(t, i*i, v)
	}
	assert.Zero(t, ex.fallback.Load(), "every call was started on the loop")
}
