// Package serve holds the servers behind `loopkernel serve`: an echo server,
// a minimal HTTP/1.1 server (keep-alive, a hello route, static files through
// kernel.Sendfile) and a TCP proxy, each a kernel.Protocol, and Run, which
// serves one of them on TCP or a Unix socket with one loop per --loops
// (SO_REUSEPORT) and shuts down gracefully on SIGINT/SIGTERM.
//
// It also owns what keeps those servers up under abuse: the Limits of a
// connection (header, idle, body, send and connect timeouts, body and head
// sizes, symlink containment below the HTTP root), the one deadline sweep
// per loop that enforces the timeouts without a timer per request
// (sweep.go), and the rate-limited log of every limit that fires.
//
// It builds on kernel only (and golang.org/x/sys for openat2); it must not
// import policy, plugins or sdk/plugin: the command picks the loop.
package serve
