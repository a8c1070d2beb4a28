package testkit

import (
	"context"

	"github.com/loopkernel/loopkernel/kernel"
)

// OffLoop runs fn on a goroutine of the loop's default executor while the
// coroutine waits for it: where a test drives blocking Go code (a net.Conn
// of package net or gonet, an exec.Cmd, crypto/tls over net) against
// what the loop serves. Run on the loop itself, such code would block the
// very loop it waits for.
func OffLoop[T any](co *kernel.Co, fn func() (T, error)) (T, error) {
	f, err := kernel.RunInExecutor(co.Loop(), nil, func(context.Context) (T, error) { return fn() })
	if err != nil {
		var zero T
		return zero, err
	}
	return f.Await(co)
}
