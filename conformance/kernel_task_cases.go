package conformance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/kernel"
)

// The task toolkit: Gather, Wait, WaitFor, timeout scopes, AsCompleted,
// Shield, TaskGroup, SleepResult, tasks with a context, cancellation counts
// and the report of an error nobody read. The behaviour is CPython's
// test_tasks, test_timeouts and test_taskgroups: the cases check the
// outcomes and orderings those tests pin down, written for this API.
var kernelToolkitCases = []kcase{
	{name: "kernel/toolkit/gather-order", run: kGatherOrder},
	{name: "kernel/toolkit/gather-first-error", run: kGatherFirstError},
	{name: "kernel/toolkit/gather-return-errors", run: kGatherReturnErrors},
	{name: "kernel/toolkit/gather-cancel-caller", run: kGatherCancelCaller},
	{name: "kernel/toolkit/gather-edge", run: kGatherEdge},
	{name: "kernel/toolkit/wait-return-when", run: kWaitReturnWhen},
	{name: "kernel/toolkit/wait-timeout", run: kWaitTimeout},
	{name: "kernel/toolkit/wait-for", run: kWaitFor},
	{name: "kernel/toolkit/wait-for-timeout", run: kWaitForTimeout},
	{name: "kernel/toolkit/wait-for-caller-cancelled", run: kWaitForCallerCancelled},
	{name: "kernel/toolkit/timeout-scope", run: kTimeoutScope},
	{name: "kernel/toolkit/timeout-reschedule", run: kTimeoutReschedule},
	{name: "kernel/toolkit/timeout-outside-cancel", run: kTimeoutOutsideCancel},
	{name: "kernel/toolkit/timeout-nested", run: kTimeoutNested},
	{name: "kernel/toolkit/as-completed", run: kAsCompleted},
	{name: "kernel/toolkit/shield", run: kShield},
	{name: "kernel/toolkit/taskgroup-ok", run: kTaskGroupOK},
	{name: "kernel/toolkit/taskgroup-failure-cancels", run: kTaskGroupFailure},
	{name: "kernel/toolkit/taskgroup-body-error", run: kTaskGroupBodyError},
	{name: "kernel/toolkit/taskgroup-parent-cancelled", run: kTaskGroupParentCancelled},
	{name: "kernel/toolkit/sleep-result", run: kSleepResult},
	{name: "kernel/toolkit/task-context", run: kTaskContext},
	{name: "kernel/toolkit/cancelling-count", run: kCancellingCount},
	{name: "kernel/toolkit/unretrieved-error-reported", run: kUnretrieved},
}

// mainTask runs body as the case's main task until it returns, under the
// watchdog, and returns its error.
func (k *kt) mainTask(l *loopFix, body func(co *kernel.Co) error) error {
	task, err := kernel.CreateTask(l.Loop, func(co *kernel.Co) (struct{}, error) { return struct{}{}, body(co) })
	k.must(err, "CreateTask")
	return k.runUntil(l, task, "main task")
}

// spawn creates a task and fails the case if that fails.
func spawn[T any](k *kt, l *loopFix, coro func(co *kernel.Co) (T, error)) *kernel.Task[T] {
	task, err := kernel.CreateTask(l.Loop, coro)
	k.must(err, "CreateTask")
	return task
}

// after returns a task that sleeps d and then returns v, or err if set.
func after[T any](k *kt, l *loopFix, d time.Duration, v T, err error) *kernel.Task[T] {
	return spawn(k, l, func(co *kernel.Co) (T, error) {
		if e := co.Sleep(d); e != nil {
			var zero T
			return zero, e
		}
		return v, err
	})
}

// blocked returns a task that waits on a future nobody resolves.
func blocked(k *kt, l *loopFix) (*kernel.Task[int], *kernel.Future[int]) {
	f := kernel.CreateFuture[int](l.Loop)
	return spawn(k, l, func(co *kernel.Co) (int, error) { return f.Await(co) }), f
}

func kGatherOrder(k *kt) {
	l := k.newLoop()
	a := after(k, l, 3*time.Millisecond, "a", nil)
	b := after(k, l, 0, "b", nil)
	f := kernel.CreateFuture[string](l.Loop)
	_, err := l.CallSoon(func() { f.SetResult("f") })
	k.must(err, "CallSoon")
	var got []string
	err = k.mainTask(l, func(co *kernel.Co) (err error) {
		got, err = kernel.Gather[string](co, a, b, f)
		return err
	})
	require.NoError(k, err)
	require.Equal(k, []string{"a", "b", "f"}, got, "rule: Gather returns the values in argument order, not completion order")
}

func kGatherFirstError(k *kt) {
	l := k.newLoop()
	boom := errors.New("boom")
	gate := kernel.CreateFuture[int](l.Loop)
	slow := spawn(k, l, func(co *kernel.Co) (int, error) { return gate.Await(co) })
	bad := after(k, l, 0, 0, boom)
	var gerr error
	var slowDoneAtReturn bool
	err := k.mainTask(l, func(co *kernel.Co) error {
		_, gerr = kernel.Gather[int](co, slow, bad)
		slowDoneAtReturn = slow.Done()
		gate.SetResult(1)
		_, err := slow.Await(co)
		return err
	})
	require.NoError(k, err)
	require.ErrorIs(k, gerr, boom, "rule: Gather returns the first error")
	require.False(k, slowDoneAtReturn, "rule: Gather returns the first error at once, without waiting for the others")
	require.False(k, slow.Cancelled(), "rule: Gather does not cancel the others when one fails")
	v, _ := slow.Result()
	require.Equal(k, 1, v)
}

func kGatherReturnErrors(k *kt) {
	l := k.newLoop()
	boom := errors.New("boom")
	ok := after(k, l, time.Millisecond, 7, nil)
	bad := after(k, l, 0, 0, boom)
	gone, _ := blocked(k, l)
	_, err := l.CallSoon(func() { gone.Cancel() })
	k.must(err, "CallSoon")
	var vals []int
	var errs []error
	err = k.mainTask(l, func(co *kernel.Co) (err error) {
		vals, errs, err = kernel.GatherReturnErrors[int](co, ok, bad, gone)
		return err
	})
	require.NoError(k, err, "rule: GatherReturnErrors reports the awaitables' errors by position, not as its own")
	require.Equal(k, 7, vals[0])
	require.NoError(k, errs[0])
	require.ErrorIs(k, errs[1], boom)
	require.ErrorIs(k, errs[2], kernel.ErrCancelled, "rule: a cancelled awaitable's entry is its CancelledError")
}

func kGatherCancelCaller(k *kt) {
	l := k.newLoop()
	c1, _ := blocked(k, l)
	c2, _ := blocked(k, l)
	outer := spawn(k, l, func(co *kernel.Co) ([]int, error) { return kernel.Gather[int](co, c1, c2) })
	_, err := l.CallLater(time.Millisecond, func() { outer.Cancel() })
	k.must(err, "CallLater")
	err = k.runUntil(l, outer, "task awaiting Gather, cancelled")
	require.ErrorIs(k, err, kernel.ErrCancelled)
	require.True(k, outer.Cancelled(), "rule: cancelling the task awaiting Gather cancels it")
	require.True(k, c1.Cancelled() && c2.Cancelled(), "rule: cancelling a Gather cancels every awaitable still pending")

	// With return_exceptions the gather waits until all of them are done.
	stubborn := spawn(k, l, func(co *kernel.Co) (int, error) {
		if err := co.Sleep(time.Hour); err != nil {
			if err := co.Sleep(2 * time.Millisecond); err != nil { // clean-up that takes time
				return 0, err
			}
			return 5, nil
		}
		return 0, nil
	})
	outer2 := spawn(k, l, func(co *kernel.Co) (bool, error) {
		_, _, err := kernel.GatherReturnErrors[int](co, stubborn)
		return stubborn.Done(), err
	})
	_, err = l.CallLater(time.Millisecond, func() { outer2.Cancel() })
	k.must(err, "CallLater")
	err = k.runUntil(l, outer2, "GatherReturnErrors cancelled")
	require.ErrorIs(k, err, kernel.ErrCancelled, "rule: a cancelled gather ends cancelled even when its awaitables caught the cancellation")
	v, err := stubborn.Result()
	require.NoError(k, err)
	require.Equal(k, 5, v)
}

func kGatherEdge(k *kt) {
	l := k.newLoop()
	other := k.newLoop()
	foreign := kernel.CreateFuture[int](other.Loop)
	done := kernel.CreateFuture[int](l.Loop)
	k.must(done.SetResult(3), "SetResult")
	var empty, got []int
	var emptyErr, gotErr, foreignErr error
	err := k.mainTask(l, func(co *kernel.Co) error {
		empty, emptyErr = kernel.Gather[int](co)
		got, gotErr = kernel.Gather[int](co, done, done)
		_, foreignErr = kernel.Gather[int](co, foreign)
		return nil
	})
	require.NoError(k, err)
	require.NoError(k, emptyErr)
	require.Empty(k, empty, "rule: Gather of nothing returns no values")
	require.NoError(k, gotErr)
	require.Equal(k, []int{3, 3}, got, "rule: an awaitable passed twice gives its value twice")
	require.ErrorIs(k, foreignErr, kernel.ErrDifferentLoop, "rule: Gather refuses an awaitable of another loop")
}

func kWaitReturnWhen(k *kt) {
	l := k.newLoop()
	boom := errors.New("boom")
	var firstDone, firstPending, excDone, excPending, allDone, allPending []kernel.Awaitable
	err := k.mainTask(l, func(co *kernel.Co) error {
		fast := after(k, l, 0, 1, nil)
		slow, slowF := blocked(k, l)
		var err error
		firstDone, firstPending, err = kernel.Wait(co, []kernel.Awaitable{slow, fast}, kernel.FirstCompleted, kernel.NoTimeout)
		if err != nil {
			return err
		}
		bad := after(k, l, time.Millisecond, 0, boom)
		excDone, excPending, err = kernel.Wait(co, []kernel.Awaitable{slow, bad}, kernel.FirstException, kernel.NoTimeout)
		if err != nil {
			return err
		}
		slowF.SetResult(2)
		allDone, allPending, err = kernel.Wait(co, []kernel.Awaitable{fast, slow, bad}, kernel.AllCompleted, kernel.NoTimeout)
		return err
	})
	require.NoError(k, err)
	require.Len(k, firstDone, 1, "rule: FirstCompleted returns when one is done")
	require.Len(k, firstPending, 1)
	require.Len(k, excDone, 1, "rule: FirstException returns when one fails")
	require.ErrorIs(k, excDone[0].Err(), boom)
	require.Len(k, excPending, 1)
	require.False(k, excPending[0].Cancelled(), "rule: Wait cancels nothing")
	require.Len(k, allDone, 3, "rule: AllCompleted returns when all are done")
	require.Empty(k, allPending)

	var emptyErr error
	k.must(k.mainTask(l, func(co *kernel.Co) error {
		_, _, emptyErr = kernel.Wait(co, []kernel.Awaitable{}, kernel.AllCompleted, kernel.NoTimeout)
		return nil
	}), "a task")
	require.ErrorIs(k, emptyErr, kernel.ErrInvalidState, "rule: Wait on no awaitables is an error (asyncio's ValueError)")
}

func kWaitTimeout(k *kt) {
	l := k.newLoop()
	slow, _ := blocked(k, l)
	var done, pending []*kernel.Task[int]
	err := k.mainTask(l, func(co *kernel.Co) (err error) {
		done, pending, err = kernel.Wait(co, []*kernel.Task[int]{slow}, kernel.AllCompleted, 2*time.Millisecond)
		return err
	})
	require.NoError(k, err, "rule: Wait's timeout is not an error")
	require.Empty(k, done)
	require.Equal(k, []*kernel.Task[int]{slow}, pending, "rule: on timeout Wait returns the awaitables still pending")
	require.False(k, slow.Done(), "rule: Wait's timeout cancels nothing")

	// The caller's cancellation does not reach the awaitables either.
	waiter := spawn(k, l, func(co *kernel.Co) (int, error) {
		_, _, err := kernel.Wait(co, []*kernel.Task[int]{slow}, kernel.AllCompleted, kernel.NoTimeout)
		return 0, err
	})
	_, err = l.CallLater(time.Millisecond, func() { waiter.Cancel() })
	k.must(err, "CallLater")
	require.ErrorIs(k, k.runUntil(l, waiter, "cancelled Wait"), kernel.ErrCancelled)
	require.False(k, slow.Cancelled(), "rule: cancelling a task in Wait does not cancel what it waits for")
}

func kWaitFor(k *kt) {
	l := k.newLoop()
	f := kernel.CreateFuture[string](l.Loop)
	_, err := l.CallLater(time.Millisecond, func() { f.SetResult("in time") })
	k.must(err, "CallLater")
	var v string
	err = k.mainTask(l, func(co *kernel.Co) (err error) {
		v, err = kernel.WaitFor[string](co, f, 10*time.Second)
		return err
	})
	require.NoError(k, err)
	require.Equal(k, "in time", v, "rule: WaitFor returns the value when it comes in time")
	v2 := ""
	err = k.mainTask(l, func(co *kernel.Co) (err error) {
		v2, err = kernel.WaitFor[string](co, f, 0)
		return err
	})
	require.NoError(k, err)
	require.Equal(k, "in time", v2, "rule: WaitFor of a done awaitable returns its value, whatever the timeout")
}

func kWaitForTimeout(k *kt) {
	l := k.newLoop()
	inner, _ := blocked(k, l)
	var werr error
	err := k.mainTask(l, func(co *kernel.Co) error {
		_, werr = kernel.WaitFor[int](co, inner, 2*time.Millisecond)
		return nil
	})
	require.NoError(k, err)
	require.ErrorIs(k, werr, kernel.ErrTimeout, "rule: WaitFor returns ErrTimeout when time is up")
	require.ErrorIs(k, werr, context.DeadlineExceeded, "rule: ErrTimeout matches context.DeadlineExceeded")
	require.NotErrorIs(k, werr, kernel.ErrCancelled, "rule: a timeout is not a cancellation of the caller")
	require.True(k, inner.Cancelled(), "rule: WaitFor cancels the awaitable on timeout and waits for it")

	// An awaitable that catches the cancellation and returns a value: that
	// value is the result (Python 3.12's wait_for).
	stubborn := spawn(k, l, func(co *kernel.Co) (int, error) {
		if err := co.Sleep(time.Hour); err != nil {
			return 9, nil
		}
		return 0, nil
	})
	var v int
	err = k.mainTask(l, func(co *kernel.Co) (err error) {
		v, err = kernel.WaitFor[int](co, stubborn, time.Millisecond)
		return err
	})
	require.NoError(k, err, "rule: an awaitable that finishes despite the timeout's cancellation gives its value")
	require.Equal(k, 9, v)

	// A zero timeout cancels at once.
	inner0, _ := blocked(k, l)
	err = k.mainTask(l, func(co *kernel.Co) error {
		_, werr = kernel.WaitFor[int](co, inner0, 0)
		return nil
	})
	require.NoError(k, err)
	require.ErrorIs(k, werr, kernel.ErrTimeout, "rule: WaitFor with a zero timeout times out a pending awaitable")
	require.True(k, inner0.Cancelled())
}

func kWaitForCallerCancelled(k *kt) {
	l := k.newLoop()
	inner, _ := blocked(k, l)
	outer := spawn(k, l, func(co *kernel.Co) (int, error) { return kernel.WaitFor[int](co, inner, time.Hour) })
	_, err := l.CallLater(time.Millisecond, func() { outer.Cancel() })
	k.must(err, "CallLater")
	err = k.runUntil(l, outer, "cancelled WaitFor")
	require.ErrorIs(k, err, kernel.ErrCancelled, "rule: cancelling the caller of WaitFor is a cancellation, not a timeout")
	require.NotErrorIs(k, err, kernel.ErrTimeout)
	require.True(k, inner.Cancelled(), "rule: cancelling the caller of WaitFor cancels the awaitable")
}

func kTimeoutScope(k *kt) {
	l := k.newLoop()
	var expired, expiredOK bool
	var terr, okErr error
	var when time.Duration
	err := k.mainTask(l, func(co *kernel.Co) error {
		start := co.Loop().Time()
		terr = kernel.TimeoutAt(co, start+2*time.Millisecond, func(s *kernel.TimeoutScope) error {
			when = s.When() - start
			err := co.Sleep(time.Hour)
			expired = s.Expired()
			return err
		})
		okErr = kernel.Timeout(co, time.Hour, func(s *kernel.TimeoutScope) error {
			err := co.Sleep(time.Millisecond)
			expiredOK = s.Expired()
			return err
		})
		return nil
	})
	require.NoError(k, err, "rule: a task whose timeout scope expired is not cancelled afterwards")
	require.ErrorIs(k, terr, kernel.ErrTimeout, "rule: a body cancelled by its deadline makes the scope return ErrTimeout")
	require.True(k, expired, "rule: Expired is true once the deadline cancelled the body")
	require.Equal(k, 2*time.Millisecond, when, "rule: When is the deadline on the loop clock")
	require.NoError(k, okErr)
	require.False(k, expiredOK)

	outside := errors.New("outside")
	var serr error
	k.must(k.mainTask(l, func(co *kernel.Co) error {
		serr = kernel.Timeout(co, kernel.NoDeadline, func(s *kernel.TimeoutScope) error {
			if s.When() != kernel.NoDeadline {
				return errors.New("When of a scope without deadline is not NoDeadline")
			}
			return outside
		})
		return nil
	}), "a task")
	require.ErrorIs(k, serr, outside, "rule: a scope returns its body's error")

	var outErr error
	outErr = kernel.Timeout(nil2co(l), time.Second, func(*kernel.TimeoutScope) error { return nil })
	require.ErrorIs(k, outErr, kernel.ErrInvalidState, "rule: a timeout scope outside a task is an error")
}

// nil2co returns a Co that is not running in any task: the Co of a task
// that has finished.
func nil2co(l *loopFix) *kernel.Co {
	var co *kernel.Co
	t, _ := kernel.CreateTask(l.Loop, func(c *kernel.Co) (int, error) { co = c; return 0, nil })
	l.RunUntilComplete(t)
	return co
}

func kTimeoutReschedule(k *kt) {
	l := k.newLoop()
	var extended, cleared, late, pastErr error
	err := k.mainTask(l, func(co *kernel.Co) error {
		extended = kernel.Timeout(co, time.Millisecond, func(s *kernel.TimeoutScope) error {
			if err := s.Reschedule(co.Loop().Time() + time.Hour); err != nil {
				return err
			}
			return co.Sleep(3 * time.Millisecond)
		})
		cleared = kernel.Timeout(co, time.Millisecond, func(s *kernel.TimeoutScope) error {
			if err := s.Reschedule(kernel.NoDeadline); err != nil {
				return err
			}
			return co.Sleep(3 * time.Millisecond)
		})
		late = kernel.Timeout(co, time.Hour, func(s *kernel.TimeoutScope) error {
			if err := s.Reschedule(co.Loop().Time() - time.Second); err != nil {
				return err
			}
			err := co.Sleep(time.Hour)
			pastErr = s.Reschedule(co.Loop().Time() + time.Hour)
			return err
		})
		return nil
	})
	require.NoError(k, err)
	require.NoError(k, extended, "rule: Reschedule to a later deadline lets the body finish")
	require.NoError(k, cleared, "rule: Reschedule(NoDeadline) removes the deadline")
	require.ErrorIs(k, late, kernel.ErrTimeout, "rule: Reschedule to a past deadline expires the scope at once")
	require.ErrorIs(k, pastErr, kernel.ErrInvalidState, "rule: an expired scope cannot be rescheduled")
}

func kTimeoutOutsideCancel(k *kt) {
	l := k.newLoop()
	var inner error
	var task *kernel.Task[int]
	task = spawn(k, l, func(co *kernel.Co) (int, error) {
		inner = kernel.Timeout(co, time.Millisecond, func(s *kernel.TimeoutScope) error {
			// Cancelled from outside at the same moment the deadline fires:
			// a timer due at the same time, scheduled after the deadline's.
			_, err := co.Loop().CallAt(s.When(), func() { task.Cancel() })
			if err != nil {
				return err
			}
			return co.Sleep(time.Hour)
		})
		return 0, inner
	})
	err := k.runUntil(l, task, "timeout scope cancelled from outside")
	require.ErrorIs(k, err, kernel.ErrCancelled, "rule: a cancellation from outside passes through a timeout scope unchanged, even when the deadline also fired")
	require.True(k, task.Cancelled())

	// A cancellation from outside before the deadline is not a timeout.
	var scopeErr error
	t2 := spawn(k, l, func(co *kernel.Co) (int, error) {
		scopeErr = kernel.Timeout(co, time.Hour, func(*kernel.TimeoutScope) error { return co.Sleep(time.Hour) })
		return 0, scopeErr
	})
	_, err = l.CallLater(time.Millisecond, func() { t2.Cancel() })
	k.must(err, "CallLater")
	require.ErrorIs(k, k.runUntil(l, t2, "cancelled before its deadline"), kernel.ErrCancelled)
	require.NotErrorIs(k, scopeErr, kernel.ErrTimeout)
}

func kTimeoutNested(k *kt) {
	l := k.newLoop()
	var innerErr, outerErr error
	var innerExpired, outerExpired bool
	err := k.mainTask(l, func(co *kernel.Co) error {
		outerErr = kernel.Timeout(co, time.Hour, func(o *kernel.TimeoutScope) error {
			innerErr = kernel.Timeout(co, time.Millisecond, func(i *kernel.TimeoutScope) error {
				err := co.Sleep(time.Hour)
				innerExpired = i.Expired()
				return err
			})
			outerExpired = o.Expired()
			return nil
		})
		return nil
	})
	require.NoError(k, err)
	require.ErrorIs(k, innerErr, kernel.ErrTimeout, "rule: the inner scope that expired returns ErrTimeout")
	require.True(k, innerExpired)
	require.NoError(k, outerErr, "rule: the outer scope that did not expire sees no error")
	require.False(k, outerExpired)

	// The outer deadline passes first: the inner scope lets the
	// cancellation through and the outer one turns it into ErrTimeout.
	err = k.mainTask(l, func(co *kernel.Co) error {
		outerErr = kernel.Timeout(co, time.Millisecond, func(o *kernel.TimeoutScope) error {
			innerErr = kernel.Timeout(co, time.Hour, func(i *kernel.TimeoutScope) error {
				return co.Sleep(time.Hour)
			})
			return innerErr
		})
		return nil
	})
	require.NoError(k, err)
	require.ErrorIs(k, innerErr, kernel.ErrCancelled, "rule: an inner scope that did not expire passes the outer deadline's cancellation through")
	require.ErrorIs(k, outerErr, kernel.ErrTimeout, "rule: the outer scope that expired returns ErrTimeout")
}

func kAsCompleted(k *kt) {
	l := k.newLoop()
	// The gates open one loop iteration apart, b then c then a, so the
	// completion order does not depend on timing.
	fa, fb, fc := kernel.CreateFuture[string](l.Loop), kernel.CreateFuture[string](l.Loop), kernel.CreateFuture[string](l.Loop)
	gated := func(f *kernel.Future[string]) *kernel.Task[string] {
		return spawn(k, l, func(co *kernel.Co) (string, error) { return f.Await(co) })
	}
	a, b, c := gated(fa), gated(fb), gated(fc)
	_, err := l.CallSoon(func() {
		fb.SetResult("b")
		l.CallSoon(func() {
			fc.SetResult("c")
			l.CallSoon(func() { fa.SetResult("a") })
		})
	})
	k.must(err, "CallSoon")
	var order []string
	err = k.mainTask(l, func(co *kernel.Co) error {
		for t, err := range kernel.AsCompleted(co, []*kernel.Task[string]{a, b, c}, kernel.NoTimeout) {
			if err != nil {
				return err
			}
			v, err := t.Await(co)
			if err != nil {
				return err
			}
			order = append(order, v)
		}
		return nil
	})
	require.NoError(k, err)
	require.Equal(k, []string{"b", "c", "a"}, order, "rule: AsCompleted yields in completion order")

	slow, _ := blocked(k, l)
	fast := after(k, l, 0, 1, nil)
	var got []*kernel.Task[int]
	var last error
	err = k.mainTask(l, func(co *kernel.Co) error {
		for t, err := range kernel.AsCompleted(co, []*kernel.Task[int]{slow, fast}, 2*time.Millisecond) {
			if err != nil {
				last = err
				break
			}
			got = append(got, t)
		}
		return nil
	})
	require.NoError(k, err)
	require.Equal(k, []*kernel.Task[int]{fast}, got)
	require.ErrorIs(k, last, kernel.ErrTimeout, "rule: AsCompleted ends with ErrTimeout when time is up")
	require.False(k, slow.Done(), "rule: AsCompleted's timeout cancels nothing")
}

func kShield(k *kt) {
	l := k.newLoop()
	gate := kernel.CreateFuture[string](l.Loop)
	inner := spawn(k, l, func(co *kernel.Co) (string, error) { return gate.Await(co) })
	outer := spawn(k, l, func(co *kernel.Co) (string, error) { return kernel.Shield[string](inner).Await(co) })
	_, err := l.CallLater(time.Millisecond, func() { outer.Cancel() })
	k.must(err, "CallLater")
	require.ErrorIs(k, k.runUntil(l, outer, "task awaiting a shield, cancelled"), kernel.ErrCancelled,
		"rule: the task awaiting a shield is cancelled")
	require.False(k, inner.Done(), "rule: cancelling a shield does not cancel what it shields")
	k.must(gate.SetResult("kept"), "SetResult")
	require.NoError(k, k.runUntil(l, inner, "the shielded task"))
	v, _ := inner.Result()
	require.Equal(k, "kept", v)

	boom := errors.New("boom")
	bad := after(k, l, 0, "", boom)
	s := kernel.Shield[string](bad)
	require.ErrorIs(k, k.runUntil(l, s, "shield of a failing task"), boom, "rule: a shield ends with its awaitable's error")
	gone, _ := blocked(k, l)
	s2 := kernel.Shield[int](gone)
	_, err = l.CallSoon(func() { gone.Cancel() })
	k.must(err, "CallSoon")
	require.ErrorIs(k, k.runUntil(l, s2, "shield of a cancelled task"), kernel.ErrCancelled)
	require.True(k, s2.Cancelled(), "rule: a shield of a cancelled awaitable is cancelled")
}

func kTaskGroupOK(k *kt) {
	l := k.newLoop()
	var t1, t2 *kernel.Task[int]
	var createAfter error
	var keep *kernel.TaskGroup
	err := k.mainTask(l, func(co *kernel.Co) error {
		err := kernel.RunTaskGroup(co, func(tg *kernel.TaskGroup) error {
			keep = tg
			var err error
			if t1, err = kernel.CreateGroupTask(tg, func(co *kernel.Co) (int, error) { return kernel.SleepResult(co, 2*time.Millisecond, 1) }); err != nil {
				return err
			}
			t2, err = kernel.CreateGroupTask(tg, func(co *kernel.Co) (int, error) { return 2, co.Yield() })
			return err
		})
		_, createAfter = kernel.CreateGroupTask(keep, func(co *kernel.Co) (int, error) { return 0, nil })
		return err
	})
	require.NoError(k, err, "rule: a task group whose tasks succeed returns nil")
	require.True(k, t1.Done() && t2.Done(), "rule: RunTaskGroup returns once every task in it is done")
	v1, _ := t1.Result()
	v2, _ := t2.Result()
	require.Equal(k, []int{1, 2}, []int{v1, v2})
	require.ErrorIs(k, createAfter, kernel.ErrInvalidState, "rule: a finished task group creates no task")
}

func kTaskGroupFailure(k *kt) {
	l := k.newLoop()
	e1, e2 := &taskErr{1}, &taskErr{2}
	var sibling *kernel.Task[int]
	var createDuring error
	var parent *kernel.Task[int]
	var cancellingAfter int
	parent = spawn(k, l, func(co *kernel.Co) (int, error) {
		err := kernel.RunTaskGroup(co, func(tg *kernel.TaskGroup) error {
			tg.Go(func(co *kernel.Co) error { co.Sleep(time.Millisecond); return e1 })
			tg.Go(func(co *kernel.Co) error { co.Sleep(time.Millisecond); return e2 })
			var err error
			sibling, err = kernel.CreateGroupTask(tg, func(co *kernel.Co) (int, error) { return 0, co.Sleep(time.Hour) })
			if err != nil {
				return err
			}
			err = co.Sleep(time.Hour) // the body is cancelled too
			_, createDuring = kernel.CreateGroupTask(tg, func(co *kernel.Co) (int, error) { return 0, nil })
			return err
		})
		cancellingAfter = parent.Cancelling()
		return 0, err
	})
	err := k.runUntil(l, parent, "task group with failing tasks")
	var tge *kernel.TaskGroupError
	require.ErrorAs(k, err, &tge, "rule: a failed task makes the group return a *TaskGroupError")
	require.ErrorIs(k, err, e1, "rule: the group error carries every task's error (errors.Is sees each)")
	require.ErrorIs(k, err, e2)
	require.Len(k, tge.Errs, 2, "rule: the body's cancellation is not one of the group's errors")
	require.True(k, sibling.Cancelled(), "rule: a task that fails cancels its siblings")
	require.False(k, parent.Cancelled(), "rule: the parent fails with the group's error, it is not left cancelled")
	require.Equal(k, 0, cancellingAfter, "rule: the group withdraws its own cancellation of the parent")
	require.ErrorIs(k, createDuring, kernel.ErrInvalidState, "rule: a group that is shutting down creates no task")
}

func kTaskGroupBodyError(k *kt) {
	l := k.newLoop()
	bodyErr := errors.New("body")
	var child *kernel.Task[int]
	err := k.mainTask(l, func(co *kernel.Co) error {
		return kernel.RunTaskGroup(co, func(tg *kernel.TaskGroup) error {
			child, _ = kernel.CreateGroupTask(tg, func(co *kernel.Co) (int, error) { return 0, co.Sleep(time.Hour) })
			return bodyErr
		})
	})
	require.ErrorIs(k, err, bodyErr, "rule: the body's error is one of the group's errors")
	require.True(k, child.Cancelled(), "rule: a body that fails cancels the group's tasks")

	var panicChild *kernel.Task[int]
	err = k.mainTask(l, func(co *kernel.Co) error {
		return kernel.RunTaskGroup(co, func(tg *kernel.TaskGroup) error {
			panicChild, _ = kernel.CreateGroupTask(tg, func(co *kernel.Co) (int, error) { return 0, co.Sleep(time.Hour) })
			panic("body panic")
		})
	})
	var pe *kernel.PanicError
	require.ErrorAs(k, err, &pe, "rule: a panicking body fails the group with a *PanicError")
	require.True(k, panicChild.Cancelled())
}

func kTaskGroupParentCancelled(k *kt) {
	l := k.newLoop()
	var child *kernel.Task[int]
	parent := spawn(k, l, func(co *kernel.Co) (int, error) {
		return 0, kernel.RunTaskGroup(co, func(tg *kernel.TaskGroup) error {
			child, _ = kernel.CreateGroupTask(tg, func(co *kernel.Co) (int, error) { return 0, co.Sleep(time.Hour) })
			return nil // the group waits for the child in its exit
		})
	})
	_, err := l.CallLater(time.Millisecond, func() { parent.Cancel() })
	k.must(err, "CallLater")
	err = k.runUntil(l, parent, "task group whose parent is cancelled")
	require.ErrorIs(k, err, kernel.ErrCancelled, "rule: cancelling the task running a group returns its CancelledError")
	require.True(k, parent.Cancelled())
	require.True(k, child.Cancelled(), "rule: cancelling the task running a group cancels the group's tasks")

	// Children that fail while the parent is being cancelled: their errors
	// take priority over the cancellation.
	boom := errors.New("boom")
	parent2 := spawn(k, l, func(co *kernel.Co) (int, error) {
		return 0, kernel.RunTaskGroup(co, func(tg *kernel.TaskGroup) error {
			tg.Go(func(co *kernel.Co) error {
				if err := co.Sleep(time.Hour); err != nil {
					return boom // fails while being cancelled
				}
				return nil
			})
			return co.Sleep(time.Hour)
		})
	})
	_, err = l.CallLater(time.Millisecond, func() { parent2.Cancel() })
	k.must(err, "CallLater")
	err = k.runUntil(l, parent2, "group cancelled while a task fails")
	require.ErrorIs(k, err, boom, "rule: errors of the group's tasks take priority over the parent's cancellation")
	require.Equal(k, 1, parent2.Cancelling(), "rule: the outside cancellation stays requested on the parent")

	err = kernel.RunTaskGroup(nil2co(l), func(*kernel.TaskGroup) error { return nil })
	require.ErrorIs(k, err, kernel.ErrInvalidState, "rule: a task group outside a task is an error")
}

func kSleepResult(k *kt) {
	l := k.newLoop()
	task := spawn(k, l, func(co *kernel.Co) (string, error) { return kernel.SleepResult(co, time.Millisecond, "slept") })
	require.NoError(k, k.runUntil(l, task, "SleepResult"))
	v, _ := task.Result()
	require.Equal(k, "slept", v, "rule: SleepResult returns its value after the delay")
}

func kTaskContext(k *kt) {
	l := k.newLoop()
	ctx, cancel := context.WithCancelCause(context.Background())
	var sawCtx bool
	task, err := kernel.CreateTaskContext(l.Loop, ctx, func(co *kernel.Co) (int, error) {
		sawCtx = co.Context() == ctx
		return 0, co.Sleep(time.Hour)
	})
	k.must(err, "CreateTaskContext")
	waitThen(l, func() { cancel(errors.New("shutting down")) }) // from another goroutine
	err = k.runUntil(l, task, "task with a context cancelled from another goroutine")
	require.True(k, sawCtx, "rule: co.Context() is the task's context")
	require.ErrorIs(k, err, kernel.ErrCancelled, "rule: cancelling a task's context cancels the task")
	var ce *kernel.CancelledError
	require.ErrorAs(k, err, &ce)
	require.Equal(k, "shutting down", ce.Msg, "rule: the context's cause is the cancellation message")

	ran := false
	t2, err := kernel.CreateTaskContext(l.Loop, ctx, func(co *kernel.Co) (int, error) { ran = true; return 1, nil })
	k.must(err, "CreateTaskContext")
	require.ErrorIs(k, k.runUntil(l, t2, "task with a done context"), kernel.ErrCancelled)
	require.False(k, ran, "rule: a task created with a done context is cancelled before it starts")

	plain := spawn(k, l, func(co *kernel.Co) (bool, error) { return co.Context() != nil && co.Context().Err() == nil, nil })
	require.NoError(k, k.runUntil(l, plain, "task without a context"))
	ok, _ := plain.Result()
	require.True(k, ok, "rule: a task created without a context sees context.Background()")
}

func kCancellingCount(k *kt) {
	l := k.newLoop()
	var in int
	var task *kernel.Task[int]
	task = spawn(k, l, func(co *kernel.Co) (int, error) {
		if err := co.Sleep(time.Hour); err == nil {
			return 0, errors.New("not cancelled")
		}
		// Both requests were withdrawn: the second is not delivered.
		if err := co.Yield(); err != nil {
			return 0, fmt.Errorf("a withdrawn cancellation was delivered: %w", err)
		}
		if _, err := co.Loop().CallSoon(func() { task.Cancel() }); err != nil {
			return 0, err
		}
		if err := co.Sleep(time.Hour); err == nil {
			return 0, errors.New("not cancelled")
		}
		return 0, nil
	})
	var counts []int
	_, err := l.CallSoon(func() {
		task.Cancel()
		task.Cancel()
		counts = append(counts, task.Cancelling())
		counts = append(counts, task.Uncancel())
		in = task.Uncancel()
	})
	k.must(err, "CallSoon")
	require.NoError(k, k.runUntil(l, task, "task cancelled and uncancelled"))
	require.Equal(k, []int{2, 1}, counts, "rule: Cancelling counts requests; Uncancel withdraws one and returns the rest")
	require.Equal(k, 0, in)
	require.False(k, task.Cancelled())
}

func kUnretrieved(k *kt) {
	var mu = make(chan kernel.ErrorContext, 4)
	l := k.newLoop()
	l.SetExceptionHandler(func(_ *kernel.Loop, c kernel.ErrorContext) { mu <- c })
	boom := errors.New("nobody reads me")
	read := errors.New("read")
	t1 := after(k, l, 0, 0, boom)
	t2 := after(k, l, 0, 0, read)
	t3, _ := blocked(k, l)
	_, err := l.CallSoon(func() { t3.Cancel() })
	k.must(err, "CallSoon")
	other := spawn(k, l, func(co *kernel.Co) (int, error) { return 0, co.Sleep(2 * time.Millisecond) })
	require.NoError(k, k.runUntil(l, other, "failing tasks"))
	require.True(k, t1.Done() && t2.Done() && t3.Done())
	require.ErrorIs(k, t2.Err(), read)
	require.NoError(k, l.Close())
	var got []kernel.ErrorContext
	for len(mu) > 0 {
		got = append(got, <-mu)
	}
	require.Len(k, got, 1, "rule: exactly the failed task whose error was never read is reported (not the read one, not the cancelled one): %v", got)
	require.Equal(k, "Task exception was never retrieved", got[0].Message)
	require.ErrorIs(k, got[0].Err, boom)
	require.Contains(k, fmt.Sprint(got[0].Future), t1.Name(), "rule: the report names the task")
}
