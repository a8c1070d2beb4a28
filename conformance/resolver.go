package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/internal/dnstest"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// The resolver contract: what getaddrinfo and getnameinfo promise a
// program, checked against DNS servers the cases start on 127.0.0.1
// (internal/dnstest) for every resolver back-end and placement.
//
// Most cases point the back-end at a resolv.conf and hosts file of their
// own, through the settings a back-end takes as plugin configuration
// (sdk/plugin.Configurer): resolv_conf, hosts, timeout, check_interval. A
// back-end that takes no settings (the `go` resolver reads the system's
// files and nothing else) skips those cases, naming the capability.

// ResolverConfig binds the resolver suite to one back-end in one placement.
type ResolverConfig struct {
	// Subject names the back-end and placement in results, e.g.
	// "plugin:dns".
	Subject string
	// New builds a fresh resolver with the settings (keys of the dns
	// back-end's Configure). With nil settings it must build the
	// back-end as it comes. A resolver that is an io.Closer is closed
	// when the case ends.
	New func(ctx context.Context, settings map[string]string) (sdk.Resolver, error)
	// Settable says the back-end takes the settings; without it the cases
	// that need their own servers skip.
	Settable bool
	// Kill, for an out-of-process placement, SIGKILLs the process serving
	// r; nil for in-process, whose cases about a dying plugin skip.
	Kill func(r sdk.Resolver) error
}

// Capabilities a resolver case may need: the short names --list shows
// (Case.Needs "resolver:NAME"), and the skip reasons' long ones.
const (
	capSettings = "settings"
	capProcess  = "plugin-process"
)

var capWhy = map[string]string{
	capSettings: "settings (resolv_conf, hosts, timeout: the back-end must take its configuration, as plugin.Configurer does)",
	capProcess:  "plugin-process (an out-of-process placement whose process can be killed)",
}

// ResolverSuite returns the resolver contract bound to cfg.
func ResolverSuite(cfg ResolverConfig) Suite {
	cases := make([]Case, 0, len(resolverCases))
	for _, rc := range resolverCases {
		needs := ""
		if len(rc.needs) > 0 {
			needs = "resolver:" + strings.Join(rc.needs, ",")
		}
		cases = append(cases, Case{Name: rc.name, Needs: needs, Run: func(c *C) {
			r := &rt{C: c, cfg: cfg}
			for _, need := range rc.needs {
				switch {
				case need == capSettings && !cfg.Settable:
					c.Skip("needs capability " + capWhy[need] + "; back-end " + cfg.Subject + " reads only the system's files")
				case need == capProcess && cfg.Kill == nil:
					c.Skip("needs capability " + capWhy[need] + "; " + cfg.Subject + " runs in process")
				}
			}
			rc.run(r)
		}})
	}
	return Suite{Name: "resolver", Cases: cases}
}

// RunResolver binds every resolver case to t as a subtest, through a
// Session as RunSuite does (a hang blocks the cases after it). Run it with
// -race.
func RunResolver(t *testing.T, cfg ResolverConfig) {
	t.Helper()
	// The resolver cases build no selector: the session needs no factory.
	runSuite(t, ResolverSuite(cfg), nil, cfg.Subject)
}

// ResolverBinding makes the ResolverConfig of a resolver spec, of the forms
// every family takes (plugin.Resolve):
//
//	NAME          the back-end registered in sdk.Resolvers, in process
//	plugin:NAME   that back-end in a plugin process (this executable
//	              re-executed), else the executable loopkernel-plugin-NAME
//	              in opts.PluginDir
//	plugin:PATH   the plugin executable at PATH
//
// Out of process the cases' settings travel as Spec.Config (opts.Template
// supplies the rest: logger, pinned digest). Whether a third-party plugin
// takes the settings is found out by starting it once with one.
func ResolverBinding(spec string, opts plugin.Options) (ResolverConfig, error) {
	name, out := strings.CutPrefix(spec, "plugin:")
	cfg := ResolverConfig{Subject: spec}
	if factory, ok := sdk.Resolvers.Lookup(name); ok {
		probe, err := factory()
		if err != nil {
			return ResolverConfig{}, fmt.Errorf("resolver %q: %w", spec, err)
		}
		_, cfg.Settable = probe.(plugin.Configurer)
		if c, ok := probe.(io.Closer); ok {
			c.Close()
		}
		if !out {
			cfg.New = func(_ context.Context, settings map[string]string) (sdk.Resolver, error) {
				r, err := factory()
				if err != nil {
					return nil, err
				}
				for k, v := range settings {
					if err := r.(plugin.Configurer).Configure(k, v); err != nil {
						return nil, err
					}
				}
				return r, nil
			}
			return cfg, nil
		}
	} else if !out {
		return ResolverConfig{}, fmt.Errorf("resolver %q: %w (have %v, or plugin:NAME, plugin:PATH)", spec, sdk.ErrUnknownBackend, sdk.Resolvers.Names())
	}
	cfg.New = func(ctx context.Context, settings map[string]string) (sdk.Resolver, error) {
		o := opts
		o.Template.Config = settings
		return plugin.Open(ctx, sdk.Resolvers, spec, o)
	}
	cfg.Kill = killPlugin
	if _, bundled := sdk.Resolvers.Lookup(name); !bundled {
		settable, err := probeSettable(cfg.New)
		if err != nil {
			return ResolverConfig{}, fmt.Errorf("resolver %q: %w", spec, err)
		}
		cfg.Settable = settable
	}
	return cfg, nil
}

// probeSettable starts a third-party resolver plugin once with a harmless
// setting: a plugin that refuses it (the control plane's Configure fails
// with "has no setting") takes no settings; any other failure to start is
// the binding's error.
func probeSettable(newResolver func(context.Context, map[string]string) (sdk.Resolver, error)) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), resolverRunLimit)
	defer cancel()
	r, err := newResolver(ctx, map[string]string{"timeout": "5s"})
	if err != nil {
		if strings.Contains(err.Error(), "has no setting") {
			return false, nil
		}
		return false, err
	}
	if c, ok := r.(io.Closer); ok {
		c.Close()
	}
	return true, nil
}

// killPlugin SIGKILLs the process serving a plugin resolver.
func killPlugin(r sdk.Resolver) error {
	rr, ok := r.(*plugin.RemoteResolver)
	if !ok {
		return fmt.Errorf("%T is not a plugin resolver", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := rr.Stats(ctx)
	if err != nil {
		return err
	}
	return syscall.Kill(st.Pid, syscall.SIGKILL)
}

// rt is what a resolver case body works with.
type rt struct {
	*C
	cfg ResolverConfig
}

// rcase is a resolver case before it is bound.
type rcase struct {
	name  string
	needs []string // of capSettings, capProcess
	run   func(r *rt)
}

// resolverRunLimit bounds one lookup in a case; a working resolver answers
// in milliseconds, a timeout case in its configured timeout.
const resolverRunLimit = 10 * time.Second

// caseTimeout is the per-try timeout the cases configure: short, so that
// silence is noticed quickly, and long enough for a loaded machine running
// -race to answer on loopback.
const caseTimeout = 400 * time.Millisecond

// env is a case's own DNS world: a server, a resolv.conf naming it, a
// hosts file, and the resolver reading them.
type env struct {
	srv      *dnstest.Server
	dir      string
	conf     string
	hosts    string
	resolver sdk.Resolver
}

// newResolver builds a resolver from the binding with settings, closed when
// the case ends.
func (r *rt) newResolver(settings map[string]string) sdk.Resolver {
	ctx, cancel := context.WithTimeout(r.Context(), resolverRunLimit)
	defer cancel()
	res, err := r.cfg.New(ctx, settings)
	if err != nil {
		r.Errorf("build resolver %s: %v", r.cfg.Subject, err)
		r.FailNow()
	}
	if c, ok := res.(io.Closer); ok {
		r.Cleanup(func() { c.Close() })
	}
	r.Watch(res) // a plugin's restarts fail the case unless it provoked them
	return res
}

// tempDir is a directory removed when the case ends.
func (r *rt) tempDir() string {
	dir, err := os.MkdirTemp("", "loopkernel-resolver-")
	if err != nil {
		r.Errorf("temp dir: %v", err)
		r.FailNow()
	}
	r.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// world starts a server and a resolver on a resolv.conf naming the
// servers given (the new server when none), with the extra resolv.conf
// lines and hosts text.
func (r *rt) world(hosts string, servers []netip.AddrPort, lines ...string) *env {
	return r.worldT(caseTimeout, hosts, servers, lines...)
}

// worldOn is a new resolver world around an existing server, with another
// per-try timeout (the server's settings stay).
func (r *rt) worldOn(srv *dnstest.Server, timeout time.Duration) *env {
	return r.build(srv, timeout, "", nil)
}

// worldT is world with another per-try timeout.
func (r *rt) worldT(timeout time.Duration, hosts string, servers []netip.AddrPort, lines ...string) *env {
	return r.build(dnstest.Start(r), timeout, hosts, servers, lines...)
}

// build writes the files of a world around srv and makes its resolver.
func (r *rt) build(srv *dnstest.Server, timeout time.Duration, hosts string, servers []netip.AddrPort, lines ...string) *env {
	e := &env{srv: srv, dir: r.tempDir()}
	if servers == nil {
		servers = []netip.AddrPort{e.srv.Addr}
	}
	var err error
	if e.conf, err = dnstest.ResolvConf(e.dir, servers, append([]string{"options attempts:1"}, lines...)...); err != nil {
		r.Errorf("resolv.conf: %v", err)
		r.FailNow()
	}
	e.hosts = filepath.Join(e.dir, "hosts")
	if err := os.WriteFile(e.hosts, []byte(hosts), 0o644); err != nil {
		r.Errorf("hosts: %v", err)
		r.FailNow()
	}
	e.resolver = r.newResolver(map[string]string{
		"resolv_conf":    e.conf,
		"hosts":          e.hosts,
		"timeout":        timeout.String(),
		"check_interval": "10ms",
	})
	return e
}

// lookup runs Getaddrinfo under resolverRunLimit.
func (r *rt) lookup(res sdk.Resolver, host string, hints sdk.AddrinfoHints) ([]sdk.Addrinfo, error) {
	ctx, cancel := context.WithTimeout(r.Context(), resolverRunLimit)
	defer cancel()
	ai, err := res.Getaddrinfo(ctx, host, "80", hints)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		r.Errorf("rule: a lookup ends within its configured timeout: %q still running after %v", host, resolverRunLimit)
		r.FailNow()
	}
	return ai, err
}

// addrs lists the addresses of ai, without ports, in order.
func addrStrings(ai []sdk.Addrinfo) []string {
	out := make([]string, 0, len(ai))
	for _, a := range ai {
		out = append(out, a.Addr.Addr().String())
	}
	return out
}
