// Package dataplane carries the per-operation traffic between the kernel
// process and an out-of-process back-end plugin. A selector's plane carries
// registration changes, the wait, readiness and wakes; a resolver's or
// executor's (the call plane: CallClient, ServeCalls) carries calls, many in
// flight at once, each matched to its result by a call id. The go-plugin
// control plane costs about 150 µs a call, ten times a raw socket round
// trip, so neither the loop nor a call ever touches it; this package uses
// one SOCK_SEQPACKET socket pair per plugin process, fixed little-endian
// frames and raw sendmsg/recvmsg, with descriptors passed by SCM_RIGHTS on
// the selector plane. WIRE.md specifies the frames for plugins in other languages.
//
// The host side is Client, an sdk.Selector: the kernel drives it exactly as
// it drives an in-process selector. Client batches Register, Modify and
// Unregister locally and sends them with the next Wait, so an iteration is
// one request and one reply. Its table of registrations is the source of
// truth, which gives synchronous ErrExists/ErrNotRegistered, drops stale
// events, and lets Replace re-register everything with a restarted plugin.
//
// The plugin side is Serve, which answers a Client using any sdk.Selector
// (the same back-end code that runs in-process); ServeCalls answers a
// CallClient using any sdk.Resolver or sdk.Executor.
//
// It must not import the kernel or sdk/plugin (which supervises the
// processes at either end of these sockets).
//
// Failure is reported as errors wrapping ErrPeerGone (the plugin died) or
// ErrProtocol (it sent something WIRE.md forbids); a supervisor restarts the
// plugin and calls Replace (selector plane) or makes a new CallClient (call
// plane, whose calls in flight fail wrapping sdk.ErrBackendDied).
package dataplane
