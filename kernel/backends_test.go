package kernel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/kernel"
	_ "github.com/loopkernel/loopkernel/plugins/executor" // the default function executor
	_ "github.com/loopkernel/loopkernel/plugins/resolver" // the default resolver
	"github.com/loopkernel/loopkernel/sdk"
)

var (
	beSquare = sdk.NewFunc("kernel-test.square", func(_ context.Context, x int) (int, error) { return x * x, nil })
	beFail   = sdk.NewFunc("kernel-test.fail", func(context.Context, int) (int, error) {
		return 0, errors.New("refused")
	})
	beWait = sdk.NewFunc("kernel-test.wait", func(ctx context.Context, _ int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
)

func TestCallFuncOnDefaultExecutor(t *testing.T) {
	l := rsLoop(t)
	got, err := rsRun(t, l, func(co *kernel.Co) (int, error) {
		f, err := kernel.CallFunc(l, beSquare, 12)
		if err != nil {
			return 0, err
		}
		return f.Await(co)
	})
	require.NoError(t, err)
	assert.Equal(t, 144, got)
	require.NotNil(t, l.FuncExecutor(), "the default executor was made on first use")

	_, err = rsRun(t, l, func(co *kernel.Co) (int, error) {
		f, err := kernel.CallFunc(l, beFail, 1)
		if err != nil {
			return 0, err
		}
		return f.Await(co)
	})
	var ce *sdk.CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "refused", ce.Message)
}

// recordingExecutor is a function executor that remembers whether it was
// closed, to check who owns it.
type recordingExecutor struct {
	sdk.Executor
	closed bool
}

func (r *recordingExecutor) Close() error { r.closed = true; return r.Executor.Close() }

func TestFuncExecutorOwnership(t *testing.T) {
	given := &recordingExecutor{Executor: mustExecutor(t)}
	l := kernel.New(mustEpoll(t), kernel.WithFuncExecutor(given))
	assert.Same(t, sdk.Executor(given), l.FuncExecutor())
	require.NoError(t, l.Close())
	assert.True(t, given.closed, "an executor given with WithFuncExecutor is the loop's to close")

	lent := &recordingExecutor{Executor: mustExecutor(t)}
	l = kernel.New(mustEpoll(t))
	l.SetFuncExecutor(lent)
	require.NoError(t, l.Close())
	assert.False(t, lent.closed, "an executor lent with SetFuncExecutor stays the caller's")
	lent.Close()
}

func TestCallFuncCancelAbandonsTheCall(t *testing.T) {
	l := rsLoop(t)
	_, err := rsRun(t, l, func(co *kernel.Co) (int, error) {
		f, err := kernel.CallFunc(l, beWait, 0)
		if err != nil {
			return 0, err
		}
		if _, err := l.CallLater(10*time.Millisecond, func() { f.Cancel() }); err != nil {
			return 0, err
		}
		return f.Await(co)
	})
	assert.ErrorIs(t, err, kernel.ErrCancelled)
}

func mustExecutor(t *testing.T) sdk.Executor {
	ex, err := sdk.Executors.New(sdk.DefaultExecutor)
	require.NoError(t, err)
	return ex
}

func mustEpoll(t *testing.T) sdk.Selector {
	sel, err := sdk.Selectors.New("epoll")
	require.NoError(t, err)
	return sel
}
