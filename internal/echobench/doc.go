// Package echobench measures echo servers against each other: load
// generators of its own that verify every echoed byte (an epoll client on
// one OS thread, as a C load generator is written, and Go's net with a
// goroutine per connection), the reference servers (the "floor" — a
// minimal epoll echo loop on raw system calls —, Go's net package with a
// goroutine per connection, and Python asyncio and uvloop when installed),
// and a runner that interleaves them in one invocation so machine noise
// hits all alike.
//
// Every server runs as its own process, started with a command line that
// prints "LISTENING host:port" on stdout once it accepts connections, and,
// when two CPUs are available, pinned to one CPU while the client runs on
// the other. Its CPU time (and that of its child processes, so an
// out-of-process selector plugin is counted) is read from the process CPU
// clock before and after the measured window: on a 2-core machine the
// client saturates a core near 100 k requests/s, so CPU per request, not
// requests per second, is what separates servers. Counters the noise of
// other processes barely moves (the server's sleeps per request, the
// client's events per wait, and whatever a --probe command counts) say why.
//
// It imports nothing of the loop kernel: the servers under test are other
// processes.
package echobench
