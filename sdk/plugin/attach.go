package plugin

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"google.golang.org/grpc"
)

// A plugin is started by our runner, not by go-plugin's Client.Start:
// Start (v1.8.0) makes a socket directory in $TMPDIR before it calls a
// RunnerFunc, and a host killed between the two leaves it behind with no
// process alive that knows its name. Instead the host starts the process
// with the environment Start would give it, reads the go-plugin handshake
// line itself, and attaches a go-plugin client to the running process with
// a ReattachConfig. What Start would have done besides is done here or in
// the runner: the start timeout on the handshake line, the version and
// protocol checks, forwarding the plugin's stderr to the logger
// (pluginlog.go), and draining its stdout.

// pluginEnv is the environment go-plugin's Start gives a plugin (the host's
// own, the magic cookie, the protocol versions the host speaks); the
// caller appends ours.
func pluginEnv() []string {
	return append(os.Environ(),
		handshake.MagicCookieKey+"="+handshake.MagicCookieValue,
		"PLUGIN_MIN_PORT=0", "PLUGIN_MAX_PORT=0",
		"PLUGIN_PROTOCOL_VERSIONS="+strconv.Itoa(int(handshake.ProtocolVersion)),
	)
}

// attach waits up to timeout for the plugin's handshake line, checks it,
// and connects go-plugin's gRPC client to the address it names.
func (p *process) attach(logger hclog.Logger, timeout time.Duration) (goplugin.ClientProtocol, error) {
	r := p.run
	t := time.NewTimer(timeout)
	defer t.Stop()
	var got lineOrErr
	select {
	case got = <-r.line:
	case <-t.C:
		return nil, errors.New("timeout while waiting for plugin to start")
	}
	p.trace.line = time.Now()
	if got.err != nil {
		// Stdout ended without a line: the plugin exited (or was killed).
		return nil, fmt.Errorf("plugin exited before its go-plugin handshake (%v)\n%s", got.err, r.diagnose())
	}
	addr, err := parseHandshakeLine(got.line)
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, r.diagnose())
	}
	p.addr = addr
	p.client = goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  handshake,
		Plugins:          hostPlugins,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           logger,
		StartTimeout:     timeout,
		Reattach: &goplugin.ReattachConfig{
			Protocol:        goplugin.ProtocolGRPC,
			ProtocolVersion: int(handshake.ProtocolVersion),
			Addr:            addr,
			Pid:             r.pid,
			// go-plugin kills and waits for the process through our
			// runner, which reaps it; with Pid alone it would look the
			// process up and watch it on its own.
			ReattachFunc: func() (runner.AttachedRunner, error) { return r, nil },
		},
		// The socket file is gone once the host has connected, so the
		// connection must never be redialled: no idle mode (gRPC's default
		// would close an idle channel after 30 minutes and redial on the
		// next call). The stdio stream go-plugin keeps open holds the
		// channel busy anyway; this makes it explicit.
		GRPCDialOptions: []grpc.DialOption{grpc.WithIdleTimeout(0)},
	})
	return p.client.Client()
}

// parseHandshakeLine checks a go-plugin handshake line,
// CORE-VERSION|APP-VERSION|NETWORK|ADDRESS|PROTOCOL[|...], against what
// this host speaks, and returns the address the plugin listens on.
func parseHandshakeLine(line string) (net.Addr, error) {
	parts := strings.Split(strings.TrimSpace(line), "|")
	if len(parts) < 4 {
		return nil, fmt.Errorf("unrecognized go-plugin handshake line %q", line)
	}
	if parts[0] != strconv.Itoa(goplugin.CoreProtocolVersion) {
		return nil, fmt.Errorf("plugin speaks go-plugin core protocol %s, this host %d: rebuild the plugin", parts[0], goplugin.CoreProtocolVersion)
	}
	if want := strconv.Itoa(int(handshake.ProtocolVersion)); parts[1] != want {
		return nil, fmt.Errorf("plugin speaks loopkernel control protocol %s, this host %s: rebuild the plugin against this SDK", parts[1], want)
	}
	protocol := goplugin.ProtocolNetRPC // go-plugin's default when the field is missing
	if len(parts) >= 5 {
		protocol = goplugin.Protocol(parts[4])
	}
	if protocol != goplugin.ProtocolGRPC {
		return nil, fmt.Errorf("plugin speaks go-plugin protocol %q, this host only %q", protocol, goplugin.ProtocolGRPC)
	}
	switch parts[2] {
	case "unix":
		return net.ResolveUnixAddr("unix", parts[3])
	case "tcp":
		return net.ResolveTCPAddr("tcp", parts[3])
	default:
		return nil, fmt.Errorf("plugin listens on unknown network %q", parts[2])
	}
}
