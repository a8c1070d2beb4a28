// Package dataplane carries a selector's per-iteration traffic between the
// kernel process and an out-of-process selector plugin: registration
// changes, the wait, readiness and wakes. The go-plugin control plane costs
// about 150 µs a call, ten times a raw socket round trip, so the loop never
// touches it; this package uses one SOCK_SEQPACKET socket pair, fixed
// little-endian frames and raw sendmsg/recvmsg, with descriptors passed by
// SCM_RIGHTS. WIRE.md specifies the frames for plugins in other languages.
//
// The host side is Client, an sdk.Selector: the kernel drives it exactly as
// it drives an in-process selector. Client batches Register, Modify and
// Unregister locally and sends them with the next Wait, so an iteration is
// one request and one reply. Its table of registrations is the source of
// truth, which gives synchronous ErrExists/ErrNotRegistered, drops stale
// events, and lets Replace re-register everything with a restarted plugin.
//
// The plugin side is Serve, which answers a Client using any sdk.Selector
// (the same back-end code that runs in-process).
//
// Failure is reported as errors wrapping ErrPeerGone (the plugin died) or
// ErrProtocol (it sent something WIRE.md forbids); a supervisor restarts the
// plugin and calls Replace.
package dataplane
