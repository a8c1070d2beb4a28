// Package echobench measures echo servers against each other: a load
// generator of its own that verifies every echoed byte, the reference
// servers (the "floor" — a minimal epoll echo loop on raw system calls —,
// Go's net package with a goroutine per connection, and Python asyncio and
// uvloop when installed), and a runner that interleaves them in one
// invocation so machine noise hits all alike.
//
// Every server runs as its own process, started with a command line that
// prints "LISTENING host:port" on stdout once it accepts connections. Its CPU
// time (and that of its child processes, so an out-of-process selector
// plugin is counted) is read from /proc before and after the measured
// window: on a 2-core machine the client saturates a core near 100 k
// requests/s, so CPU per request, not requests per second, is what
// separates servers.
package echobench
