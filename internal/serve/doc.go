// Package serve holds the servers behind `loopkernel serve`: an echo server,
// a minimal HTTP/1.1 server (keep-alive, a hello route, static files through
// kernel.Sendfile) and a TCP proxy, each a kernel.Protocol, and Run, which
// serves one of them on TCP or a Unix socket with one loop per --loops
// (SO_REUSEPORT) and shuts down gracefully on SIGINT/SIGTERM.
package serve
