package kernel

import (
	"errors"
	"fmt"
)

// CancelAllTasks cancels every pending task of the loop and runs the loop
// until all of them have finished, which is how asyncio.run ends a program
// (its _cancel_all_tasks): each task's coroutine sees the cancellation at
// its await and runs its clean-up. A task that ends with an error other
// than its cancellation is reported to the exception handler ("unhandled
// exception during shutdown"), since nobody is left to read it. It fails if
// the loop is closed or running, or stops before the tasks are done (a task
// that swallows its cancellation and never ends keeps it running, as in
// asyncio).
func (l *Loop) CancelAllTasks() error {
	if len(l.tasks) == 0 {
		return nil
	}
	if err := l.checkUsable(); err != nil {
		return fmt.Errorf("cancel all tasks: %w", err)
	}
	pending := append([]*taskState(nil), l.tasks...)
	all := CreateFuture[struct{}](l)
	left := len(pending)
	for _, t := range pending {
		t.cancel("")
		t.fut.addDone(func() {
			if left--; left == 0 {
				all.SetResult(struct{}{})
			}
		})
	}
	if err := l.RunUntilComplete(all); err != nil {
		return fmt.Errorf("cancel all tasks: %w", err)
	}
	for _, t := range pending {
		// Err, not the field: reading it marks the error as retrieved.
		if err := t.fut.Err(); err != nil && !errors.Is(err, ErrCancelled) {
			l.CallExceptionHandler(ErrorContext{
				Message: "unhandled exception during shutdown",
				Err:     err,
				Future:  t.fut,
			})
		}
	}
	return nil
}
