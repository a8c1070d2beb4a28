package sdk_test

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// oneSlot is about the smallest sdk.CallStarter: one call at a time, run
// on a goroutine that signals its end on a pipe, whose read end is the
// call's descriptor.
type oneSlot struct{ busy bool }

func (s *oneSlot) Call(ctx context.Context, fn string, arg []byte) ([]byte, error) {
	return sdk.RunFunc(ctx, fn, arg)
}

func (s *oneSlot) Close() error { return nil }

func (s *oneSlot) StartCall(ctx context.Context, fn string, arg []byte) (sdk.StartedCall, bool, error) {
	if s.busy {
		return nil, false, fmt.Errorf("one slot: %w", sdk.ErrWouldWait)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, false, err
	}
	s.busy = true
	c := &slotCall{s: s, r: p[0]}
	go func() {
		c.res, c.err = sdk.RunFunc(ctx, fn, arg)
		_, _ = unix.Write(p[1], []byte{1})
		_ = unix.Close(p[1])
	}()
	return c, true, nil
}

type slotCall struct {
	s   *oneSlot
	r   int
	res []byte
	err error
}

func (c *slotCall) Fd() int { return c.r }

func (c *slotCall) Poll() ([]byte, error, bool) {
	var b [1]byte
	if n, _ := unix.Read(c.r, b[:]); n != 1 {
		return nil, nil, false
	}
	_ = unix.Close(c.r)
	c.s.busy = false
	return c.res, c.err, true
}

func (c *slotCall) Abandon() {
	for {
		if _, _, done := c.Poll(); done {
			return
		}
		_, _ = unix.Poll([]unix.PollFd{{Fd: int32(c.r), Events: unix.POLLIN}}, -1)
	}
}

// A CallStarter's caller (a loop, in kernel.CallFunc) starts the call,
// waits for its descriptor, and reads the answer with Poll; a second call
// while the only slot is busy is told to wait (ErrWouldWait), or could go
// to Call.
func ExampleCallStarter() {
	sdk.RegisterFunc("example.twice", func(_ context.Context, b []byte) ([]byte, error) {
		return append(b, b...), nil
	})
	var ex sdk.CallStarter = &oneSlot{}
	ctx := context.Background()
	call, ok, err := ex.StartCall(ctx, "example.twice", []byte("ab"))
	fmt.Println(ok, err)
	_, _, err = ex.StartCall(ctx, "example.twice", []byte("cd"))
	fmt.Println(errors.Is(err, sdk.ErrWouldWait))
	for {
		_, _ = unix.Poll([]unix.PollFd{{Fd: int32(call.Fd()), Events: unix.POLLIN}}, -1)
		if res, err, done := call.Poll(); done {
			fmt.Println(string(res), err)
			break
		}
	}
	// Output:
	// true <nil>
	// true
	// abab <nil>
}
