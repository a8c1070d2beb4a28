// Package plugin runs a Selector in its own process: Serve is what a plugin's
// main calls, Launch is what a host calls, and the *Selector that Launch
// returns supervises the plugin process and restarts it when it dies.
//
// It lives beside package sdk rather than inside it because it needs the data
// plane (sdk/dataplane), which itself implements sdk.Selector; a package sdk
// that imported sdk/dataplane would be an import cycle.
//
// # Two planes
//
// hashicorp/go-plugin over gRPC carries the control plane only: the service
// in sdk/proto (handshake, capabilities, configuration, health, stats,
// shutdown). Every call is a round trip costing about 150 µs, so none is made
// per loop iteration. Readiness travels on the data plane, a SOCK_SEQPACKET
// socketpair the host creates: the plugin's end is handed over as an extra
// file (descriptor 3), announced in the environment variable
// LOOPKERNEL_DATAPLANE_FD.
//
// # Placement
//
// A back-end registered with sdk.Register can run in-process (call its
// factory) or out-of-process without a separate binary: the host re-executes
// its own executable with LOOPKERNEL_BUNDLED_PLUGIN=name, and ServeBundled,
// called first thing in main, serves that back-end. Third-party plugins are
// separate executables, conventionally named loopkernel-plugin-NAME and found
// with Discover in a plugin directory (LOOPKERNEL_PLUGIN_DIR).
//
// # Lifetime
//
// A plugin must not outlive its host, and must not leave its go-plugin socket
// behind. The host starts every plugin with PR_SET_PDEATHSIG=SIGTERM from one
// goroutine locked to one OS thread for the life of the process (the signal
// fires when the forking *thread* exits, not the process, so a fork from an
// arbitrary goroutine's thread could signal the plugin the moment the Go
// runtime retires that thread). Serve catches SIGTERM, removes its socket
// directory and exits. A second, independent trigger is the data plane: when
// the host dies its end of the socketpair closes and Serve exits the same way.
// We do not unlink the socket after connecting instead, because gRPC may
// redial (after an idle timeout) and would then find nothing to connect to.
// One window remains: a host that dies within the few milliseconds between
// starting a plugin and the plugin installing its SIGTERM handler leaves an
// empty 0700 directory named plugin-dir* in $TMPDIR.
//
// A plugin must be the process the host started: a wrapper script has to
// exec the real binary (the handshake checks the pid), or the parent-death
// signal would not reach it.
package plugin
