// Package gonet adapts the loop's stream transports and servers to Go's net
// interfaces, so code written for package net — net/http's Serve with a
// listener, io.Copy, bufio, a TLS client over a net.Conn — runs on a
// loopkernel loop.
//
// The two worlds have opposite shapes. The loop calls protocols back on its
// own goroutine and must never block; net code blocks a goroutine per call
// (Read waits for data, Accept waits for a peer). A Conn is the meeting
// point: its protocol half, on the loop, copies received bytes into a
// buffer and takes buffered writes out of another; its net.Conn half, on
// any goroutine, blocks on those buffers with deadlines. Each buffer is
// bounded, and the bound is where the loop's flow control meets the
// goroutine's: a reader that falls behind pauses the transport's reading,
// a transport whose write buffer runs over blocks Write.
//
// What that costs, plainly: every Read that finds nothing buffered parks
// its goroutine and is woken by the loop (a goroutine hand-off), and every
// burst of writes schedules one call onto the loop through the thread-safe
// queue (a hand-off, plus an eventfd write when the loop sleeps). Bytes are
// copied once more than on a kernel transport in each direction. Go's own
// net package has none of those hops, so serving net/http through this
// adapter is slower than net/http on Go's netpoller (BenchmarkHTTP measures
// both in the same run); it exists so that net code can share a loop, its
// back-end and its policies, not to beat Go at Go's own game.
//
// Listen and Dial run on the loop (they take the coroutine); a Conn's and a
// Listener's methods are for other goroutines, never for the loop's own
// callbacks or tasks, which they would block. Dialer dials from any
// goroutine, for net/http's Transport.
//
// This package imports the kernel only: no back-end, no sdk.
package gonet
