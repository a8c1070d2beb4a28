package executor_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/executor"
	"github.com/loopkernel/loopkernel/sdk"
)

// Calls a loop makes through kernel.CallFunc take the pool's started-call
// path (sdk.CallStarter): sent from the loop's goroutine, the answer read
// when the loop sees the worker channel readable. These tests hold that path
// to the contract the blocking Call meets (conformance.TestExecutors).

// loopOn returns a loop whose function executor is p.
func loopOn(t *testing.T, p *executor.Pool) *kernel.Loop {
	t.Helper()
	l := testkit.NewLoop(t, "")
	l.SetFuncExecutor(p)
	return l
}

func TestStartedCallsResultsAndErrors(t *testing.T) {
	p := newPool(t, executor.PoolOptions{Workers: 1})
	l := loopOn(t, p)
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		for i := range 50 {
			f, err := kernel.CallFunc(l, double, i)
			require.NoError(t, err)
			got, err := f.Await(co)
			require.NoError(t, err)
			require.Equal(t, 2*i, got)
		}
		f, err := kernel.CallFunc(l, boom, 1)
		require.NoError(t, err)
		_, err = f.Await(co)
		var ce *sdk.CallError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, "executor-test.panic", ce.Func)
		f2, err := kernel.CallFunc(l, fail, struct{}{})
		require.NoError(t, err)
		_, err = f2.Await(co)
		require.ErrorAs(t, err, &ce)
		assert.Contains(t, ce.Message, "no luck")
		w, err := kernel.CallFunc(l, pid, 0)
		require.NoError(t, err)
		got, err := w.Await(co)
		require.NoError(t, err)
		assert.NotEqual(t, os.Getpid(), got, "the function ran in a worker")
		return struct{}{}, nil
	})
	require.NoError(t, err)
}

// More calls than workers: those that find no idle worker go the goroutine
// way and wait their turn; all come back right.
func TestStartedCallsBeyondTheWorkers(t *testing.T) {
	p := newPool(t, executor.PoolOptions{Workers: 2, Queue: 4})
	l := loopOn(t, p)
	got, err := testkit.Run(t, l, func(co *kernel.Co) ([]int, error) {
		var fs []kernel.AwaitableOf[int]
		for i := range 16 {
			f, err := kernel.CallFunc(l, double, i)
			if err != nil {
				return nil, err
			}
			fs = append(fs, f)
		}
		return kernel.Gather(co, fs...)
	})
	require.NoError(t, err)
	for i, v := range got {
		assert.Equal(t, 2*i, v)
	}
}

// A worker that dies during a started call fails that call only, and the
// next one runs on its replacement.
func TestStartedCallWorkerDies(t *testing.T) {
	p := newPool(t, executor.PoolOptions{Workers: 1})
	l := loopOn(t, p)
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		f, err := kernel.CallFunc(l, exit, 3)
		require.NoError(t, err)
		_, err = f.Await(co)
		require.ErrorIs(t, err, sdk.ErrBackendDied)
		assert.Contains(t, err.Error(), "exit status 3")
		g, err := kernel.CallFunc(l, double, 4)
		require.NoError(t, err)
		got, err := g.Await(co)
		require.NoError(t, err, "the pool goes on")
		assert.Equal(t, 8, got)
		return struct{}{}, nil
	})
	require.NoError(t, err)
}

// Cancelling the future of a started call abandons it: the function's
// context is cancelled in the worker, which comes back to the pool.
func TestStartedCallCancelled(t *testing.T) {
	p := newPool(t, executor.PoolOptions{Workers: 1, Grace: 20 * time.Second})
	l := loopOn(t, p)
	w0, err := pid.Call(context.Background(), p, 0)
	require.NoError(t, err)
	_, err = testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		f, err := kernel.CallFunc(l, block, 0)
		require.NoError(t, err)
		require.NoError(t, co.Sleep(20*time.Millisecond))
		assert.True(t, f.Cancel())
		_, err = f.Await(co)
		require.ErrorIs(t, err, kernel.ErrCancelled)
		return struct{}{}, nil
	})
	require.NoError(t, err)
	w1, err := pid.Call(context.Background(), p, 0)
	require.NoError(t, err)
	assert.Equal(t, w0, w1, "a function that honours its context gives its worker back")
}

// Closing the pool under a started call fails it with ErrExecutorClosed.
func TestStartedCallPoolClosed(t *testing.T) {
	p := newPool(t, executor.PoolOptions{Workers: 1})
	l := loopOn(t, p)
	w, err := pid.Call(context.Background(), p, 0)
	require.NoError(t, err)
	_, err = testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		f, err := kernel.CallFunc(l, block, 0)
		require.NoError(t, err)
		require.NoError(t, co.Sleep(20*time.Millisecond))
		require.NoError(t, p.Close())
		_, err = f.Await(co)
		require.ErrorIs(t, err, sdk.ErrExecutorClosed)
		return struct{}{}, nil
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return syscall.Kill(w, 0) != nil }, 10*time.Second, 5*time.Millisecond,
		"the worker of the started call is stopped")
}

// Closing the loop under a started call abandons it; the pool goes on.
func TestStartedCallLoopClosed(t *testing.T) {
	p := newPool(t, executor.PoolOptions{Workers: 1, Grace: 20 * time.Second})
	sel := testkit.NewLoop(t, "")
	sel.SetFuncExecutor(p)
	f, err := testkit.Run(t, sel, func(co *kernel.Co) (*kernel.Future[int], error) {
		return kernel.CallFunc(sel, block, 0)
	})
	require.NoError(t, err)
	require.NoError(t, sel.Close())
	assert.False(t, f.Done())
	got, err := double.Call(context.Background(), p, 21)
	require.NoError(t, err, "the abandoned call gave its worker back")
	assert.Equal(t, 42, got)
}

// StartCall by hand: poll(2) the call's descriptor, then Poll.
func TestStartCallByHand(t *testing.T) {
	p := newPool(t, executor.PoolOptions{Workers: 1})
	ctx := context.Background()
	arg, err := double.Encode(5)
	require.NoError(t, err)
	c, ok, err := p.StartCall(ctx, double.Name(), arg)
	require.NoError(t, err)
	require.True(t, ok)
	_, ok2, err := p.StartCall(ctx, double.Name(), arg)
	require.ErrorIs(t, err, sdk.ErrWouldWait, "the only worker is busy: the caller waits, or uses Call")
	assert.False(t, ok2)
	for {
		fds := []unix.PollFd{{Fd: int32(c.Fd()), Events: unix.POLLIN}}
		_, err := unix.Poll(fds, 10_000)
		require.NoError(t, err)
		res, err, done := c.Poll()
		if !done {
			continue
		}
		require.NoError(t, err)
		got, err := double.Decode(res)
		require.NoError(t, err)
		assert.Equal(t, 10, got)
		break
	}
	_, _, err = p.StartCall(ctx, "executor-test.no-such-function", nil)
	require.ErrorIs(t, err, sdk.ErrUnknownFunc)
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, ok, err = p.StartCall(dctx, double.Name(), arg)
	require.NoError(t, err)
	assert.False(t, ok, "a call with a deadline is left to Call, which watches it")
	_, ok, err = p.StartCall(ctx, "executor-test.echo", make([]byte, 300<<10))
	require.NoError(t, err)
	assert.False(t, ok, "an argument for shared memory is left to Call")
}

// Calls beyond the idle workers wait on the loop and start as started
// calls end; one cancelled while it waits never runs; when the started
// call is abandoned, the waiting ones go to Call on goroutines.
func TestStartedCallsWaitOnTheLoop(t *testing.T) {
	p := newPool(t, executor.PoolOptions{Workers: 1, Grace: 20 * time.Second})
	l := loopOn(t, p)
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		first, err := kernel.CallFunc(l, block, 0)
		require.NoError(t, err)
		second, err := kernel.CallFunc(l, double, 1)
		require.NoError(t, err)
		third, err := kernel.CallFunc(l, double, 2)
		require.NoError(t, err)
		require.NoError(t, co.Sleep(20*time.Millisecond))
		assert.False(t, second.Done(), "the only worker is busy")
		assert.True(t, third.Cancel())
		assert.True(t, first.Cancel())
		got, err := second.Await(co)
		require.NoError(t, err)
		assert.Equal(t, 2, got)
		_, err = third.Await(co)
		require.ErrorIs(t, err, kernel.ErrCancelled)
		return struct{}{}, nil
	})
	require.NoError(t, err)
}

// A waiting call the pool will not start (its argument goes through shared
// memory) goes to Call when a worker comes free, and so do those behind it.
func TestStartedCallsWaitingForCall(t *testing.T) {
	p := newPool(t, executor.PoolOptions{Workers: 1, ShmThreshold: 1 << 10})
	l := loopOn(t, p)
	big := strings.Repeat("x", 4<<10)
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		a, err := kernel.CallFunc(l, double, 1)
		require.NoError(t, err)
		b, err := kernel.CallFunc(l, upper, big)
		require.NoError(t, err)
		c, err := kernel.CallFunc(l, double, 3)
		require.NoError(t, err)
		got, err := a.Await(co)
		require.NoError(t, err)
		assert.Equal(t, 2, got)
		s, err := b.Await(co)
		require.NoError(t, err)
		assert.Equal(t, strings.ToUpper(big), s)
		got, err = c.Await(co)
		require.NoError(t, err)
		assert.Equal(t, 6, got)
		return struct{}{}, nil
	})
	require.NoError(t, err)
}

// A pool with a queue bound leaves a call that finds every worker busy to
// Call, whose back-pressure applies to a loop's calls too: fail-fast past
// the bound.
func TestStartedCallsKeepTheQueueBound(t *testing.T) {
	p := newPool(t, executor.PoolOptions{Workers: 1, Queue: 1, FailFast: true, Grace: 20 * time.Second})
	ctx := context.Background()
	arg, err := double.Encode(1)
	require.NoError(t, err)
	c, ok, err := p.StartCall(ctx, double.Name(), arg)
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = p.StartCall(ctx, double.Name(), arg)
	require.NoError(t, err, "not ErrWouldWait: Call applies the bound")
	assert.False(t, ok)
	c.Abandon()

	l := loopOn(t, p)
	_, err = testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		var fs []*kernel.Future[int]
		for range 4 {
			f, err := kernel.CallFunc(l, block, 0)
			require.NoError(t, err)
			fs = append(fs, f)
		}
		require.NoError(t, co.Sleep(50*time.Millisecond))
		full := 0
		for _, f := range fs {
			if f.Done() {
				_, err := f.Result()
				require.ErrorIs(t, err, executor.ErrQueueFull)
				full++
			}
		}
		assert.Equal(t, 2, full, "one call runs, one waits in the queue, two are refused")
		for _, f := range fs {
			f.Cancel()
		}
		return struct{}{}, nil
	})
	require.NoError(t, err)
}

// Closing the pool from another goroutine while a loop keeps calls going
// through it ends every call with its result or ErrExecutorClosed, and the
// loop's tasks all finish.
func TestStartedCallsWhilePoolCloses(t *testing.T) {
	for range 3 {
		p := newPool(t, executor.PoolOptions{Workers: 2})
		l := loopOn(t, p)
		time.AfterFunc(20*time.Millisecond, func() { p.Close() })
		_, err := testkit.Run(t, l, func(co *kernel.Co) ([]int, error) {
			var tasks []kernel.AwaitableOf[int]
			for range 8 {
				tk, err := kernel.CreateTask(l, func(co *kernel.Co) (int, error) {
					for n := 0; ; n++ {
						f, err := kernel.CallFunc(l, double, n)
						if err != nil {
							return n, err
						}
						got, err := f.Await(co)
						if err != nil {
							if !errors.Is(err, sdk.ErrExecutorClosed) {
								return n, err
							}
							return n, nil
						}
						if got != 2*n {
							return n, fmt.Errorf("double(%d) = %d", n, got)
						}
					}
				})
				if err != nil {
					return nil, err
				}
				tasks = append(tasks, tk)
			}
			return kernel.Gather(co, tasks...)
		})
		require.NoError(t, err)
	}
}
