// Package kernel is loopkernel's loop core: the AbstractEventLoop contract of
// Python's asyncio, in Go names a Python user recognises, and the engine that
// runs it. It owns every descriptor and imports no back-end (a layering test
// keeps plugins/ out of it); policy/ hands it one.
//
// # The loop
//
// One iteration (Loop.iterate, which RunForever and RunUntilComplete call
// until the loop stops) reads top to bottom like libuv's uv_run and
// CPython's _run_once. Loop.gather is phases 1 to 4: drop cancelled timers;
// compute the poll timeout (zero when callbacks are ready or the loop is
// stopping, else the distance to the earliest timer) and poll the I/O
// driver, which returns the callbacks of the operations that completed;
// queue those, signals and other goroutines' callbacks; move due timers to
// the ready queue. Phase 5, in iterate itself, runs exactly the callbacks
// that were ready when the batch began. The spec's stop semantics fall out
// of that count rather than from special cases.
//
// # I/O
//
// All I/O goes through one operation-level seam, sdk.Driver (libuv's
// stream API: read start with a buffer provider, write with a completion,
// accept, connect, shutdown, close). Every transport is written once above
// it: the stream transport (net_stream.go, with its write queue in
// net_writequeue.go), the server's accept loop (net_server.go), connect with
// Happy Eyeballs attempts (net_connect.go), the datagram transport
// (net_datagram.go), the sock_* calls (sockops.go), sendfile (sendfile.go)
// and, where the driver has the capability, AddReader and AddWriter
// (fdwatch.go). io_table.go records the descriptors open in the driver.
// New builds a loop on the readiness driver (driver/readiness) over any
// sdk.Selector, in process or a plugin's; NewOnDriver takes any driver, such
// as a completion driver over an sdk.Proactor.
//
// Concurrency: a Loop belongs to the goroutine that runs it. Only
// CallSoonThreadsafe, Stop-through-CallSoonThreadsafe and the driver's Wake
// may be used from other goroutines; debug mode (SetDebug) turns a
// non-thread-safe call from another goroutine into ErrWrongGoroutine.
//
// Callbacks are plain func() values; Go closures take the place of asyncio's
// *args. Handles are small values that are recycled after their callback ran,
// so scheduling a callback, or delivering an I/O completion, allocates
// nothing once the loop is warm.
package kernel
