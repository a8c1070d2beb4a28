package testkit

import (
	"errors"
	"fmt"
	"time"

	"github.com/loopkernel/loopkernel/kernel"
)

// Limit bounds one Run: far above what a working test needs, well below
// go test's own timeout, so that a stuck coroutine fails its own test with
// a message instead of the whole binary being killed with a stack dump.
const Limit = 30 * time.Second

// stopGrace is how long the watchdog waits, after cancelling a task that
// ran past its limit, before it stops the loop under it: a coroutine that
// swallows its cancellation must not hang the test either.
const stopGrace = 2 * time.Second

// ErrNotFinished marks an error of the kit's own, never the coroutine's:
// the task could not be created, or the watchdog cut it off.
var ErrNotFinished = errors.New("testkit: the coroutine did not run to its end")

// Go runs body as a task on l until it completes and returns its outcome.
// If it is still running after limit, a watchdog cancels the task (from its
// own goroutine, through CallSoonThreadsafe), and stops the loop if even
// that does not end it; the error then wraps ErrNotFinished and says what
// the coroutine returned. The watchdog never touches the loop before
// limit, so it changes nothing a test measures.
func Go[V any](l *kernel.Loop, limit time.Duration, body func(co *kernel.Co) (V, error)) (V, error) {
	var zero V
	task, err := kernel.CreateTask(l, body)
	if err != nil {
		return zero, fmt.Errorf("%w: create task: %w", ErrNotFinished, err)
	}
	stopper := make(chan *time.Timer, 1)
	watchdog := time.AfterFunc(limit, func() {
		l.CallSoonThreadsafe(func() { task.Cancel() })
		stopper <- time.AfterFunc(stopGrace, func() { l.CallSoonThreadsafe(l.Stop) })
	})
	err = l.RunUntilComplete(task)
	if !watchdog.Stop() {
		// It fired: the test fails, and the stop it armed is disarmed
		// (one already queued may end the loop's next run early).
		(<-stopper).Stop()
		return zero, fmt.Errorf("%w: still running after %v; the watchdog cancelled it (it returned: %v)", ErrNotFinished, limit, err)
	}
	if err != nil {
		return zero, err
	}
	return task.Result()
}

// Run is Go for a test, with Limit: it fails t when the task cannot be
// created or runs past the limit, and otherwise returns the coroutine's own
// outcome for the test to check.
func Run[V any](t T, l *kernel.Loop, body func(co *kernel.Co) (V, error)) (V, error) {
	t.Helper()
	v, err := Go(l, Limit, body)
	if errors.Is(err, ErrNotFinished) {
		fatal(t, "run", err)
	}
	return v, err
}

// Until sleeps on the coroutine's loop in millisecond steps until cond
// holds, for a test waiting on what protocol callbacks record. It returns
// an error if cond does not hold within d, or the sleep's error (a
// cancellation) as it is, for the coroutine to return.
func Until(co *kernel.Co, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not reached within %v", d)
		}
		if err := co.Sleep(time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}
