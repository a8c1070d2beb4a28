package kernel_test

import (
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/selector"
)

func newLoop(t testing.TB) *kernel.Loop {
	sel, err := selector.NewEpoll()
	if err != nil {
		t.Fatal(err)
	}
	l := kernel.New(sel)
	t.Cleanup(func() { l.Close() })
	return l
}

func TestSmoke(t *testing.T) {
	l := newLoop(t)
	var got []int
	l.CallSoon(func() { got = append(got, 1) })
	l.CallLater(10*time.Millisecond, func() { got = append(got, 3); l.Stop() })
	l.CallSoon(func() { got = append(got, 2) })
	task, _ := kernel.CreateTask(l, func(co *kernel.Co) (int, error) {
		f := kernel.CreateFuture[int](l)
		l.CallLater(time.Millisecond, func() { f.SetResult(41) })
		v, err := f.Await(co)
		if err := co.Sleep(time.Millisecond); err != nil {
			return 0, err
		}
		return v + 1, err
	})
	if err := l.RunUntilComplete(task); err != nil {
		t.Fatal(err)
	}
	v, err := task.Result()
	if v != 42 || err != nil {
		t.Fatal(v, err)
	}
	go l.CallSoonThreadsafe(func() { got = append(got, 99) })
	if err := l.RunForever(); err != nil {
		t.Fatal(err)
	}
	t.Log(got)
}
