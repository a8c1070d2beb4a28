package testkit

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// StartedCalls wraps an executor that can start calls (sdk.CallStarter, the
// process pool) so that every call it can start goes that way, as a loop's
// kernel.CallFunc does, and the executor contract's cases (conformance's
// executor suite) hold its started calls to the same rules as Call: the
// wrapper starts the call without a deadline, as a loop does, waits for the
// call's descriptor or the end of ctx in poll(2), reads the answer with
// Poll, and abandons the call when ctx ends first. A call the executor
// declines to start goes to its Call.
func StartedCalls(cs sdk.CallStarter) sdk.Executor { return startedCalls{cs} }

type startedCalls struct{ sdk.CallStarter }

func (s startedCalls) Call(ctx context.Context, fn string, arg []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return s.CallStarter.Call(ctx, fn, arg) // says it was not started
	}
	c, ok, err := s.StartCall(context.Background(), fn, arg)
	if errors.Is(err, sdk.ErrWouldWait) {
		return s.CallStarter.Call(ctx, fn, arg) // waits for a worker
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		return s.CallStarter.Call(ctx, fn, arg)
	}
	ended, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		c.Abandon()
		return nil, fmt.Errorf("testkit: eventfd: %w", err)
	}
	defer unix.Close(ended)
	stop := context.AfterFunc(ctx, func() { _, _ = unix.Write(ended, []byte{1, 0, 0, 0, 0, 0, 0, 0}) })
	defer func() {
		if !stop() {
			var b [8]byte
			_, _ = unix.Read(ended, b[:]) // waits for the write under way
		}
	}()
	for {
		fds := []unix.PollFd{{Fd: int32(c.Fd()), Events: unix.POLLIN}, {Fd: int32(ended), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
			c.Abandon()
			return nil, fmt.Errorf("testkit: poll: %w", err)
		}
		if fds[0].Revents != 0 {
			if res, err, done := c.Poll(); done {
				return res, err
			}
			continue
		}
		if fds[1].Revents != 0 {
			c.Abandon()
			return nil, fmt.Errorf("started call %q abandoned: %w", fn, ctx.Err())
		}
	}
}
