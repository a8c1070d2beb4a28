package executor_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/plugins/executor"
	"github.com/loopkernel/loopkernel/sdk"
)

var (
	double = sdk.NewFunc("executor-test.double", func(_ context.Context, x int) (int, error) { return 2 * x, nil })
	fail   = sdk.NewFunc("executor-test.fail", func(_ context.Context, _ struct{}) (int, error) {
		return 0, errors.New("no luck")
	})
	boom  = sdk.NewFunc("executor-test.panic", func(context.Context, int) (int, error) { panic("boom") })
	block = sdk.NewFunc("executor-test.block", func(ctx context.Context, _ int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
)

func TestCallRunsRegisteredFunctions(t *testing.T) {
	ex := executor.NewGoroutine()
	defer ex.Close()
	ctx := context.Background()

	got, err := double.Call(ctx, ex, 21)
	require.NoError(t, err)
	assert.Equal(t, 42, got)

	_, err = fail.Call(ctx, ex, struct{}{})
	var ce *sdk.CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "executor-test.fail", ce.Func)
	assert.Equal(t, "no luck", ce.Message)

	_, err = boom.Call(ctx, ex, 1)
	require.ErrorAs(t, err, &ce)
	assert.Contains(t, ce.Message, "panic: boom")

	_, err = ex.Call(ctx, "executor-test.missing", nil)
	assert.ErrorIs(t, err, sdk.ErrUnknownFunc)

	_, err = ex.Call(ctx, double.Name(), []byte("not json"))
	require.ErrorAs(t, err, &ce, "an argument that does not decode is the function's failure")
	assert.Contains(t, ce.Message, "decoding the argument")
}

func TestCallCancelAndClose(t *testing.T) {
	ex := executor.NewGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := block.Call(ctx, ex, 0)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	errc := make(chan error, 1)
	go func() {
		_, err := block.Call(context.Background(), ex, 0)
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	require.NoError(t, ex.Close())
	select {
	case err := <-errc:
		assert.ErrorIs(t, err, sdk.ErrExecutorClosed, "a call in flight fails when the executor closes")
	case <-time.After(5 * time.Second):
		t.Fatal("a call in flight was not failed by Close")
	}
	_, err = double.Call(context.Background(), ex, 1)
	assert.ErrorIs(t, err, sdk.ErrExecutorClosed)
}

func TestRegisteredAsDefault(t *testing.T) {
	ex, err := sdk.Executors.New(sdk.DefaultExecutor)
	require.NoError(t, err)
	defer ex.Close()
	got, err := double.Call(context.Background(), ex, 4)
	require.NoError(t, err)
	assert.Equal(t, 8, got)
}
