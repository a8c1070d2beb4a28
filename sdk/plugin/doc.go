// Package plugin runs a back-end of any family (selector, resolver,
// executor, proactor) in its own process: Serve is what a plugin's main calls, Launch
// (or Open, from a spec string) is what a host calls, and the back-end that
// Launch returns (a *RemoteSelector, *RemoteResolver, *RemoteExecutor or
// *RemoteProactor)
// implements the family's sdk interface, supervises the plugin process and
// restarts it when it dies.
//
// It lives beside package sdk rather than inside it because it needs the data
// plane (sdk/dataplane), which itself implements sdk.Selector; a package sdk
// that imported sdk/dataplane would be an import cycle. It must not import
// the kernel or any back-end.
//
// # Two planes
//
// hashicorp/go-plugin over gRPC carries the control plane only: the service
// in sdk/proto (handshake, capabilities, configuration, health, stats,
// shutdown). Every call is a round trip costing about 150 µs, so none is made
// per loop iteration or per call. The traffic travels on a data plane, a
// SOCK_SEQPACKET socketpair the host creates: the plugin's end is handed
// over as an extra file (descriptor 3), announced in the environment
// variable LOOPKERNEL_DATAPLANE_FD. A selector's plane carries registrations
// and readiness in lock-step exchanges; a resolver's or executor's carries
// calls, many in flight at once, matched to their results by call id
// (sdk/dataplane/WIRE.md specifies both). A proactor's socketpair is the
// control socket of its shared-memory plane (sdk/proactorplane,
// sdk/dataplane/PROACTOR_WIRE.md): operations travel on rings in a memfd
// both processes map, and only the plane's hello and each descriptor (by
// SCM_RIGHTS) cross the socket.
//
// # Families
//
// There is one handshake (go-plugin's cookie LOOPKERNEL_PLUGIN, control
// protocol version 2) for every family. go-plugin's plugin map is keyed by
// family name, and one plugin binary may serve several families (Backends);
// the host starts one process per back-end it uses and names the family in
// LOOPKERNEL_PLUGIN_FAMILY, which the control Handshake confirms.
//
// # Supervision
//
// One supervisor serves every family: it starts the process (checking
// Spec.SHA256 first, restarts included), runs the family's health check
// (a selector's Wait, sliced into 250ms pieces, must be answered within
// its slice plus a grace; a resolver or executor is pinged every 250ms on
// its call plane and must answer, or keep frames moving, within the
// grace), restarts a process that died or hung, and gives up when it
// cannot keep one alive. The grace follows the measured exchange time (16
// times the slowest recent exchange, between 300ms and Spec.ReplyTimeout),
// so a hung plugin is noticed in well under a second. The restart budget
// is time, not attempts: an outage begins at a failure and ends once a
// replacement has answered for twice Spec.MaxBackoff; its restarts back off
// (0, 10ms, doubling to Spec.MaxBackoff, default 2s), and a failure more
// than Spec.RestartBudget (default 10s) into it is final. Then, with
// Spec.Fallback, the in-process back-end of that name takes over (a
// warning says why); without, the back-end fails with an error wrapping
// sdk.ErrPluginFailed that names the family, the plugin, its last exit
// status and the failures. Each family says what a restart means for its
// callers:
//
//   - a selector replays its registrations into the new process; the Wait
//     that noticed returns 0, nil and the loop goes on, since readiness is
//     level-triggered; during a backoff its Wait sleeps no longer than its
//     timeout (a Wake ends the sleep), so the loop's callbacks and timers
//     keep running while no readiness is reported; a fallback hands every
//     live registration to the in-process selector;
//   - a resolver fails the lookups in flight, and an executor the calls in
//     flight, with an error wrapping sdk.ErrBackendDied that says the worker
//     died, its pid and how it ended (the call may or may not have run, so
//     it is not retried); calls made after the death go to the new process.
//   - a proactor fails the operations in flight (reads, writes, connects,
//     shutdowns) with an error wrapping sdk.ErrBackendDied that names the
//     plugin, its pid and how it ended, replays accepts and descriptor
//     watches into the new process, and registers descriptors again as
//     they are used; its health check is the plane's heartbeat, and it has
//     no in-process fallback (the operations live in the plugin's ring).
//
// # Placement
//
// A back-end registered in its family's registry (sdk.Selectors,
// sdk.Resolvers, sdk.Executors, sdk.Proactors) can run in-process (call its factory) or
// out-of-process without a separate binary: the host re-executes its own
// executable with LOOPKERNEL_BUNDLED_PLUGIN=NAME and LOOPKERNEL_PLUGIN_FAMILY
// set, and ServeBundled, called first thing in main, serves that back-end.
// Third-party plugins are separate executables, conventionally named
// loopkernel-plugin-NAME and found with Discover in a plugin directory
// (LOOPKERNEL_PLUGIN_DIR).
//
// # Lifetime
//
// A plugin must not outlive its host, and must not leave its go-plugin socket
// behind. The host starts every plugin with PR_SET_PDEATHSIG (SIGWINCH:
// ignored by default, so a plugin still starting survives it and exits
// by the data-plane path below, tidily; see parentDeathSignal) from one
// goroutine locked to one OS thread for the life of the process (the signal
// fires when the forking *thread* exits, not the process, so a fork from an
// arbitrary goroutine's thread could signal the plugin the moment the Go
// runtime retires that thread). Serve catches it, and SIGTERM, and exits. A second,
// independent trigger is the data plane: when the host dies its end of the
// socketpair closes and Serve exits the same way.
//
// The go-plugin socket (in a 0700 directory plugin-dirNNN that go-plugin
// makes in $TMPDIR) is removed by the host as soon as it has connected,
// with gRPC's idle mode off so that the connection is never redialled; a
// running plugin has nothing on disk, so killing host and plugin together
// (a process-group, cgroup or OOM kill) leaves nothing behind. Every failed
// start removes the directory too. The host itself makes nothing on disk
// before the fork: go-plugin's Client.Start (v1.8.0) would make a
// plugin-dirNNN of its own before any plugin exists, which a host killed at
// that moment left behind, so the host starts the plugin itself, reads its
// go-plugin handshake line, and attaches go-plugin's client to the running
// process (ReattachConfig). The first plugin start of every host still
// sweeps leftovers of older hosts, or of other go-plugin hosts of the same
// user, away (sweepStale: only directories of this user, of go-plugin's
// shape, older than a minute, holding nothing but sockets no live process
// is bound to).
//
// A plugin must be the process the host started: a wrapper script has to
// exec the real binary (the handshake checks the pid), or the parent-death
// signal would not reach it.
package plugin
