// Package kernel is loopkernel's loop core: the AbstractEventLoop contract of
// Python's asyncio, in Go names a Python user recognises, and the engine that
// runs it.
//
// One iteration of the loop (Loop.runOnce) reads top to bottom like libuv's
// uv_run and CPython's _run_once: compute the poll timeout (zero when
// callbacks are ready or the loop is stopping, else the distance to the
// earliest timer), wait on the back-end selector, turn readiness into ready
// callbacks, move due timers to the ready queue, then run exactly the
// callbacks that were ready when the batch began. The spec's stop semantics
// fall out of that count rather than from special cases.
//
// All I/O goes through one narrow seam, sdk.Selector, so the same loop runs
// on an in-process epoll or poll selector or on a selector plugin in another
// process.
//
// Concurrency: a Loop belongs to the goroutine that runs it. Only
// CallSoonThreadsafe, Stop-through-CallSoonThreadsafe and the selector's Wake
// may be used from other goroutines; debug mode (SetDebug) turns a
// non-thread-safe call from another goroutine into ErrWrongGoroutine.
//
// Callbacks are plain func() values; Go closures take the place of asyncio's
// *args. Handles are small values that are recycled after their callback ran,
// so scheduling a callback allocates nothing once the loop is warm.
package kernel
