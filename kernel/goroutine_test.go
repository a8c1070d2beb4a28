package kernel_test

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
)

// RunningLoop answers the loop inside a callback, inside a task's coroutine
// before and after it suspends, and inside an async generator's body; it is
// nil on other goroutines while the loop runs and everywhere once it stopped
// (asyncio: get_running_loop inside a coroutine).
func TestRunningLoopInsideTasks(t *testing.T) {
	l := testkit.NewLoop(t, "epoll")
	var inCallback, beforeAwait, afterAwait, inGen, inChild *kernel.Loop
	foreign := make(chan *kernel.Loop, 1)
	l.CallSoon(func() { inCallback = kernel.RunningLoop() })
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		beforeAwait = kernel.RunningLoop()
		if err := co.Sleep(1e6); err != nil {
			return struct{}{}, err
		}
		afterAwait = kernel.RunningLoop()
		go func() { foreign <- kernel.RunningLoop() }()
		gen, err := kernel.NewAsyncGen(l, func(co *kernel.Co, yield func(int) bool) error {
			inGen = kernel.RunningLoop()
			yield(1)
			return nil
		})
		if err != nil {
			return struct{}{}, err
		}
		if _, _, err := gen.Next(co); err != nil {
			return struct{}{}, err
		}
		child, err := kernel.CreateTask(l, func(co *kernel.Co) (int, error) {
			inChild = kernel.RunningLoop()
			return 0, nil
		})
		if err != nil {
			return struct{}{}, err
		}
		_, err = child.Await(co)
		return struct{}{}, err
	})
	require.NoError(t, err)
	for what, got := range map[string]*kernel.Loop{
		"a callback": inCallback, "a task before it suspends": beforeAwait, "a task after it resumed": afterAwait,
		"an async generator": inGen, "a task created by a task": inChild,
	} {
		require.Same(t, l, got, "RunningLoop inside %s", what)
	}
	require.Nil(t, <-foreign, "RunningLoop on a goroutine the loop does not run")
	require.Nil(t, kernel.RunningLoop(), "RunningLoop once the loop returned")
}

// Goroutine descriptors are reused by the runtime once their goroutine has
// exited, so an entry left behind by a finished task would make a later,
// unrelated goroutine answer that loop. Many tasks end, then many fresh
// goroutines (likely to reuse their descriptors) must see no loop.
func TestRunningLoopNoStaleEntries(t *testing.T) {
	l := testkit.NewLoop(t, "epoll")
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		var tasks []*kernel.Task[struct{}]
		for range 200 {
			task, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) { return struct{}{}, co.Yield() })
			if err != nil {
				return struct{}{}, err
			}
			tasks = append(tasks, task)
		}
		for _, task := range tasks {
			if _, err := task.Await(co); err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, nil
	})
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := 0
	for range 400 {
		wg.Go(func() {
			if kernel.RunningLoop() != nil {
				mu.Lock()
				seen++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Zero(t, seen, "goroutines started after the tasks ended answered a loop")
}

// A task may not run another loop inside its coroutine, nor its own, in
// normal mode as in debug mode: the coroutine's goroutine acts for its loop.
func TestTaskCannotRunAnotherLoop(t *testing.T) {
	l1, l2 := testkit.NewLoop(t, "epoll", kernel.WithDebug(false)), testkit.NewLoop(t, "epoll")
	l2.Stop()
	got, err := testkit.Run(t, l1, func(co *kernel.Co) ([2]error, error) {
		return [2]error{l2.RunForever(), l1.RunForever()}, nil
	})
	require.NoError(t, err)
	require.ErrorIs(t, got[0], kernel.ErrOtherLoopRunning)
	require.ErrorIs(t, got[1], kernel.ErrRunning)
}

// BenchmarkRunningLoop measures RunningLoop inside a callback and inside a
// task; BenchmarkGoroutineIDFromStack is what finding a goroutine's identity
// used to cost (parsing runtime.Stack), the peer in the same run.
func BenchmarkRunningLoop(b *testing.B) {
	b.Run("callback", func(b *testing.B) {
		l := testkit.NewLoop(b, "epoll")
		b.ReportAllocs()
		l.CallSoon(func() {
			for b.Loop() {
				if kernel.RunningLoop() != l {
					b.Fatal("wrong loop")
				}
			}
			l.Stop()
		})
		require.NoError(b, l.RunForever())
	})
	b.Run("task", func(b *testing.B) {
		l := testkit.NewLoop(b, "epoll")
		b.ReportAllocs()
		_, err := testkit.Run(b, l, func(co *kernel.Co) (struct{}, error) {
			for b.Loop() {
				if kernel.RunningLoop() != l {
					b.Fatal("wrong loop")
				}
			}
			return struct{}{}, nil
		})
		require.NoError(b, err)
	})
}

func BenchmarkGoroutineIDFromStack(b *testing.B) {
	b.ReportAllocs()
	var sum uint64
	for b.Loop() {
		var buf [64]byte
		s := buf[:runtime.Stack(buf[:], false)]
		s = bytes.TrimPrefix(s, []byte("goroutine "))
		if i := bytes.IndexByte(s, ' '); i > 0 {
			s = s[:i]
		}
		id, _ := strconv.ParseUint(string(s), 10, 64)
		sum += id
	}
	_ = sum
}
