package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/loopkernel/loopkernel/internal/dnstest"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/resolver"
	"github.com/loopkernel/loopkernel/policy"
	"github.com/loopkernel/loopkernel/sdk"
)

// benchResolve is `loopkernel bench resolve`: lookups per second of the dns
// back-end (cached, and with the cache off) against Go's net.Resolver and
// asyncio's loop.getaddrinfo, all asking one DNS server this command starts
// on loopback, the sides taking turns for --rounds rounds.
//
// The server listens on 127.83.0.53 port 53 when it can (root): then
// asyncio, whose getaddrinfo is glibc's and reads /etc/resolv.conf with no
// port, is pointed at it inside a private mount namespace (unshare -m with
// a resolv.conf bind-mounted over the system's, which no other process
// sees). Without that, asyncio is measured on a hosts-file name only, and
// the table says so. Go's resolver has no cache and glibc (without nscd)
// none either, so their "same server" rows are round trips; the rows on
// "localhost" (the hosts file) are each peer's fastest path, for reference.
func benchResolve(e *env, args []string) error {
	// The flags are the bench command's own (shared with bench echo):
	// --duration per row and round, --rounds, --python.
	if len(args) > 0 {
		return usagef("bench resolve takes no arguments, only flags (--duration, --rounds, --python)")
	}
	d := benchFlag("duration", time.Second)
	rounds := benchFlag("rounds", 3)
	python := benchFlag("python", "/usr/bin/python3")
	if d <= 0 || rounds < 1 {
		return usagef("bench resolve: --duration and --rounds must be positive")
	}
	srv, port53, err := startBenchServer()
	if err != nil {
		return err
	}
	defer srv.Close()
	const name = "bench.test"
	srv.Add(name + ". 86400 IN A 127.0.0.1")
	dir, err := os.MkdirTemp("", "loopkernel-bench-resolve-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	conf, err := dnstest.ResolvConf(dir, []netip.AddrPort{srv.Addr}, "options attempts:1 timeout:2")
	if err != nil {
		return err
	}
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		return err
	}
	settings := "resolv_conf=" + conf + ",hosts=" + hosts
	// A glibc resolv.conf (no port: only usable when the server is on 53).
	glibcConf := filepath.Join(dir, "resolv.glibc.conf")
	if err := os.WriteFile(glibcConf, []byte("nameserver "+srv.Addr.Addr().String()+"\noptions attempts:1 timeout:2\n"), 0o644); err != nil {
		return err
	}

	ctx := context.Background()
	goRes := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, srv.Addr.String())
	}}
	direct := func(cacheSize string) (func(time.Duration) (float64, error), func(), error) {
		d := resolver.NewDNS(resolver.DNSOptions{ResolvConf: conf, Hosts: hosts})
		if err := d.Configure("cache_size", cacheSize); err != nil {
			return nil, nil, err
		}
		hints := sdk.AddrinfoHints{Family: syscall.AF_INET, SockType: syscall.SOCK_STREAM}
		return func(t time.Duration) (float64, error) {
			return opsPerSec(t, func() error { _, err := d.Getaddrinfo(ctx, name, "80", hints); return err })
		}, func() {}, nil
	}
	viaLoop := func(spec, cacheSize string) (func(time.Duration) (float64, error), func(), error) {
		os.Setenv(resolver.DNSEnv, settings+",cache_size="+cacheSize)
		defer os.Unsetenv(resolver.DNSEnv)
		p := &policy.Policy{Name: "bench-resolve", Selector: "epoll", Resolver: spec}
		l, err := p.NewEventLoop()
		if err != nil {
			return nil, nil, err
		}
		return func(t time.Duration) (float64, error) { return loopOpsPerSec(l, t, name) }, func() { l.Close() }, nil
	}

	type row struct {
		group, label string
		run          func(time.Duration) (float64, error)
		close        func()
		results      []float64
		note         string
	}
	var rows []*row
	add := func(group, label string, mk func() (func(time.Duration) (float64, error), func(), error)) error {
		run, closeFn, err := mk()
		if err != nil {
			return fmt.Errorf("%s: %w", label, err)
		}
		rows = append(rows, &row{group: group, label: label, run: run, close: closeFn})
		return nil
	}
	goRow := func(host string) func() (func(time.Duration) (float64, error), func(), error) {
		return func() (func(time.Duration) (float64, error), func(), error) {
			r := goRes
			if host == "localhost" {
				r = net.DefaultResolver
			}
			return func(t time.Duration) (float64, error) {
				return opsPerSec(t, func() error { _, err := r.LookupNetIP(ctx, "ip4", host); return err })
			}, func() {}, nil
		}
	}
	pyRow := func(host string, ns bool) func() (func(time.Duration) (float64, error), func(), error) {
		return func() (func(time.Duration) (float64, error), func(), error) {
			return func(t time.Duration) (float64, error) { return pythonGetaddrinfo(python, host, t, ns, glibcConf) }, func() {}, nil
		}
	}
	steps := []resolveStep{
		{"cached", "loopkernel dns, Resolver.Getaddrinfo", func() (func(time.Duration) (float64, error), func(), error) { return direct("4096") }},
		{"cached", "loopkernel dns, loop.Getaddrinfo", func() (func(time.Duration) (float64, error), func(), error) { return viaLoop("dns", "4096") }},
		{"uncached", "loopkernel dns, Resolver.Getaddrinfo", func() (func(time.Duration) (float64, error), func(), error) { return direct("0") }},
		{"uncached", "loopkernel dns, loop.Getaddrinfo", func() (func(time.Duration) (float64, error), func(), error) { return viaLoop("dns", "0") }},
		{"peer", "Go net.Resolver, same server (no cache)", goRow(name)},
		{"peer", "Go net.Resolver, localhost (hosts file)", goRow("localhost")},
		{"peer", "asyncio loop.getaddrinfo, localhost (hosts file)", pyRow("localhost", false)},
	}
	if port53 {
		steps = append(steps, resolveStep{"peer", "asyncio loop.getaddrinfo, same server (no cache)", pyRow(name, true)})
	}
	steps = slices.Insert(steps, 2, resolveStep{"cached", "loopkernel plugin:dns, loop.Getaddrinfo", func() (func(time.Duration) (float64, error), func(), error) {
		return viaLoop("plugin:dns", "4096")
	}})
	for _, s := range steps {
		if err := add(s.group, s.label, s.mk); err != nil {
			return err
		}
	}
	defer func() {
		for _, r := range rows {
			r.close()
		}
	}()
	fmt.Fprintf(e.stderr, "bench resolve: server %v, %d rounds of %v per row\n", srv.Addr, rounds, d)
	for round := range rounds {
		for _, r := range rows {
			v, err := r.run(d)
			if err != nil {
				r.note = err.Error()
				continue
			}
			r.results = append(r.results, v)
		}
		fmt.Fprintf(e.stderr, "bench resolve: round %d done\n", round+1)
	}
	med := func(r *row) float64 {
		if len(r.results) == 0 {
			return 0
		}
		s := slices.Clone(r.results)
		slices.Sort(s)
		return s[len(s)/2]
	}
	find := func(label string) float64 {
		for _, r := range rows {
			if r.label == label {
				return med(r)
			}
		}
		return 0
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tWHAT\tLOOKUPS/S\tµs/LOOKUP\tNOTE")
	for _, r := range rows {
		m := med(r)
		us := "-"
		if m > 0 {
			us = strconv.FormatFloat(1e6/m, 'f', 2, 64)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\n", r.group, r.label, m, us, r.note)
	}
	tw.Flush()
	cachedDirect, cachedLoop := find("loopkernel dns, Resolver.Getaddrinfo"), 0.0
	for _, r := range rows {
		if r.group == "cached" && r.label == "loopkernel dns, loop.Getaddrinfo" {
			cachedLoop = med(r)
		}
	}
	ratio := func(a, b float64) string {
		if a == 0 || b == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.1fx", a/b)
	}
	fmt.Fprintln(e.stdout, "\nCached loopkernel dns against the peers (target: at least 10x both):")
	fmt.Fprintf(e.stdout, "  Resolver.Getaddrinfo / Go net.Resolver, same server:     %s\n", ratio(cachedDirect, find("Go net.Resolver, same server (no cache)")))
	fmt.Fprintf(e.stdout, "  Resolver.Getaddrinfo / Go net.Resolver, hosts file:      %s\n", ratio(cachedDirect, find("Go net.Resolver, localhost (hosts file)")))
	if port53 {
		fmt.Fprintf(e.stdout, "  loop.Getaddrinfo / asyncio loop.getaddrinfo, same server: %s\n", ratio(cachedLoop, find("asyncio loop.getaddrinfo, same server (no cache)")))
	} else {
		fmt.Fprintln(e.stdout, "  asyncio could not be pointed at the local server (needs root: port 53 and unshare -m); hosts-file row only")
	}
	fmt.Fprintf(e.stdout, "  loop.Getaddrinfo / asyncio loop.getaddrinfo, hosts file:  %s\n", ratio(cachedLoop, find("asyncio loop.getaddrinfo, localhost (hosts file)")))
	return nil
}

// resolveStep is a row of the table before it runs: mk builds the
// measurement (a loop, a resolver) once, and its cleanup.
type resolveStep struct {
	group, label string
	mk           func() (func(time.Duration) (float64, error), func(), error)
}

// startBenchServer starts the DNS server on 127.83.0.53:53 if this process
// may bind it, else on a free port of 127.0.0.1.
func startBenchServer() (*dnstest.Server, bool, error) {
	if _, err := exec.LookPath("unshare"); err == nil {
		if s, err := dnstest.NewAt("127.83.0.53:53"); err == nil {
			return s, true, nil
		}
	}
	s, err := dnstest.New()
	return s, false, err
}

// opsPerSec runs op back to back for about d and returns its rate.
func opsPerSec(d time.Duration, op func() error) (float64, error) {
	if err := op(); err != nil { // warm: the first lookup fills the cache
		return 0, err
	}
	n, start := 0, time.Now()
	for time.Since(start) < d {
		for range 64 {
			if err := op(); err != nil {
				return 0, err
			}
		}
		n += 64
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// loopOpsPerSec awaits loop.Getaddrinfo back to back in one task, as the
// asyncio side awaits loop.getaddrinfo.
func loopOpsPerSec(l *kernel.Loop, d time.Duration, name string) (float64, error) {
	hints := sdk.AddrinfoHints{Family: syscall.AF_INET, SockType: syscall.SOCK_STREAM}
	task, err := kernel.CreateTask(l, func(co *kernel.Co) (float64, error) {
		one := func() error {
			f, err := l.Getaddrinfo(name, "80", hints)
			if err != nil {
				return err
			}
			_, err = f.Await(co)
			return err
		}
		if err := one(); err != nil {
			return 0, err
		}
		n, start := 0, time.Now()
		for time.Since(start) < d {
			for range 64 {
				if err := one(); err != nil {
					return 0, err
				}
			}
			n += 64
		}
		return float64(n) / time.Since(start).Seconds(), nil
	})
	if err != nil {
		return 0, err
	}
	if err := l.RunUntilComplete(task); err != nil {
		return 0, err
	}
	return task.Result()
}

const pyGetaddrinfo = `
import asyncio, socket, sys, time
name, dur = sys.argv[1], float(sys.argv[2])
async def main():
    loop = asyncio.get_running_loop()
    one = lambda: loop.getaddrinfo(name, 80, family=socket.AF_INET, type=socket.SOCK_STREAM)
    await one()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < dur:
        for _ in range(64):
            await one()
        n += 64
    print(n / (time.perf_counter() - t0))
asyncio.run(main())
`

// pythonGetaddrinfo measures asyncio's loop.getaddrinfo on host; with ns,
// inside a private mount namespace whose /etc/resolv.conf is conf.
func pythonGetaddrinfo(python, host string, d time.Duration, ns bool, conf string) (float64, error) {
	args := []string{python, "-c", pyGetaddrinfo, host, strconv.FormatFloat(d.Seconds(), 'f', 3, 64)}
	var cmd *exec.Cmd
	if ns {
		script := `mount --bind "$0" /etc/resolv.conf && exec "$@"`
		cmd = exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c", script, conf}, args...)...)
	} else {
		cmd = exec.Command(args[0], args[1:]...)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return 0, fmt.Errorf("%s: %v: %s", python, err, strings.TrimSpace(stderr.String()))
		}
		return 0, err
	}
	return strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
}
