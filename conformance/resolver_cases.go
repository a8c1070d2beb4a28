package conformance

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/internal/dnstest"
	"github.com/loopkernel/loopkernel/sdk"
)

var (
	v4Stream = sdk.AddrinfoHints{Family: syscall.AF_INET, SockType: syscall.SOCK_STREAM}
	anyTCP   = sdk.AddrinfoHints{SockType: syscall.SOCK_STREAM}
)

// badAnswerLimit is how long a lookup may take when its server misbehaves:
// the configured timeout, once, plus room for a loaded machine. Bad answers
// with our ID end the try at once; wrong IDs and silence at the timeout.
const badAnswerLimit = caseTimeout + 2*time.Second

// settings is what most cases need: their own servers and files.
var settings = []string{capSettings}

var resolverCases = []rcase{
	{name: "resolver/numeric-host-needs-no-lookup", run: func(r *rt) {
		res := r.newResolver(nil)
		ai, err := r.lookup(res, "127.0.0.1", anyTCP)
		require.NoError(r, err, "rule: a numeric host resolves to itself")
		assert.Equal(r, []string{"127.0.0.1"}, addrStrings(ai))
		assert.Equal(r, uint16(80), ai[0].Addr.Port())
	}},
	{name: "resolver/localhost-is-loopback", run: func(r *rt) {
		res := r.newResolver(nil)
		ai, err := r.lookup(res, "localhost", anyTCP)
		require.NoError(r, err, "rule: localhost resolves")
		require.NotEmpty(r, ai)
		for _, a := range ai {
			assert.True(r, a.Addr.Addr().IsLoopback(), "rule: localhost resolves to loopback only, got %v", a.Addr)
		}
	}},
	{name: "resolver/name-over-255-bytes-is-refused", run: func(r *rt) {
		res := r.newResolver(nil)
		long := strings.Repeat(strings.Repeat("a", 60)+".", 5) + "invalid"
		start := time.Now()
		_, err := r.lookup(res, long, anyTCP)
		var de *net.DNSError
		require.ErrorAs(r, err, &de, "rule: a name over 255 bytes fails with a *net.DNSError")
		assert.Less(r, time.Since(start), 2*time.Second, "rule: a name no server could be asked about fails without asking")
	}},
	{name: "resolver/bad-hints-are-refused", run: func(r *rt) {
		res := r.newResolver(nil)
		_, err := r.lookup(res, "localhost", sdk.AddrinfoHints{SockType: syscall.SOCK_STREAM, Protocol: syscall.IPPROTO_UDP})
		var de *net.DNSError
		require.ErrorAs(r, err, &de, "rule: a stream socket over UDP is refused as getaddrinfo(3) refuses it")
	}},
	{name: "resolver/getnameinfo-numeric", run: func(r *rt) {
		res := r.newResolver(nil)
		ni, err := res.Getnameinfo(r.Context(), netip.MustParseAddrPort("127.0.0.1:8080"), sdk.NINumericHost|sdk.NINumericServ)
		require.NoError(r, err)
		assert.Equal(r, sdk.NameInfo{Host: "127.0.0.1", Service: "8080"}, ni)
	}},
	{name: "resolver/hosts-file-first", needs: settings, run: func(r *rt) {
		e := r.world("127.0.0.9 h.test h\n", nil)
		e.srv.Add("h.test. 60 IN A 127.0.0.10")
		ai, err := r.lookup(e.resolver, "h.test", v4Stream)
		require.NoError(r, err)
		assert.Equal(r, []string{"127.0.0.9"}, addrStrings(ai), "rule: the hosts file answers before any server")
		assert.Zero(r, e.srv.Queries("h.test", dns.TypeA), "rule: a name in the hosts file is not asked about")

		ni, err := e.resolver.Getnameinfo(r.Context(), netip.MustParseAddrPort("127.0.0.9:1"), sdk.NINumericServ)
		require.NoError(r, err)
		assert.Equal(r, "h.test", ni.Host, "rule: getnameinfo answers from the hosts file")

		// A change to the file is seen (the case set check_interval 10ms).
		require.NoError(r, os.WriteFile(e.hosts, []byte("127.0.0.11 h.test\n# longer, so the size changes too\n"), 0o644))
		waitFor(r, "rule: an edited hosts file is read again", func() bool {
			ai, err := r.lookup(e.resolver, "h.test", v4Stream)
			return err == nil && len(ai) == 1 && ai[0].Addr.Addr().String() == "127.0.0.11"
		})
	}},
	{name: "resolver/resolv-conf-read-again", needs: settings, run: func(r *rt) {
		e := r.world("", nil)
		e.srv.Add("r.test. 60 IN A 127.0.0.20")
		ai, err := r.lookup(e.resolver, "r.test", v4Stream)
		require.NoError(r, err)
		assert.Equal(r, []string{"127.0.0.20"}, addrStrings(ai))

		other := dnstest.Start(r)
		other.Add("r.test. 60 IN A 127.0.0.21")
		_, err = dnstest.ResolvConf(e.dir, []netip.AddrPort{other.Addr}, "options attempts:1", "# the other server")
		require.NoError(r, err)
		waitFor(r, "rule: an edited resolv.conf is read again and its servers used", func() bool {
			ai, err := r.lookup(e.resolver, "r.test", v4Stream)
			return err == nil && len(ai) == 1 && ai[0].Addr.Addr().String() == "127.0.0.21"
		})
	}},
	{name: "resolver/search-and-ndots", needs: settings, run: func(r *rt) {
		e := r.world("", nil, "search sub.test test", "options ndots:2")
		e.srv.Add("x.test. 60 IN A 127.0.0.30", "a.b.sub.test. 60 IN A 127.0.0.31", "a.b. 60 IN A 127.0.0.32")
		ai, err := r.lookup(e.resolver, "x", v4Stream)
		require.NoError(r, err, "rule: a short name is tried with each search domain")
		assert.Equal(r, []string{"127.0.0.30"}, addrStrings(ai))
		assert.Equal(r, 1, e.srv.Queries("x.sub.test", dns.TypeA), "rule: search domains are tried in order")

		// One dot, below ndots:2: the search list comes first.
		ai, err = r.lookup(e.resolver, "a.b", v4Stream)
		require.NoError(r, err)
		assert.Equal(r, []string{"127.0.0.31"}, addrStrings(ai), "rule: a name with fewer dots than ndots is tried with the search list first")
		assert.Zero(r, e.srv.Queries("a.b", dns.TypeA))

		// A trailing dot: the name as it is, never the search list.
		_, err = r.lookup(e.resolver, "x.", v4Stream)
		var de *net.DNSError
		require.ErrorAs(r, err, &de, "rule: an absolute name is not searched")
		assert.True(r, de.IsNotFound, "rule: a name that does not exist is IsNotFound: %v", de)
	}},
	{name: "resolver/truncated-answer-retried-over-tcp", needs: settings, run: func(r *rt) {
		e := r.world("", nil)
		e.srv.Add("big.test. 60 IN A 127.0.0.40")
		e.srv.SetMode("big.test", dnstest.Truncate)
		ai, err := r.lookup(e.resolver, "big.test", v4Stream)
		require.NoError(r, err, "rule: a truncated UDP answer is fetched again over TCP")
		assert.Equal(r, []string{"127.0.0.40"}, addrStrings(ai))
		assert.Positive(r, e.srv.TCPQueries(), "rule: the retry goes over TCP")
	}},
	{name: "resolver/use-vc-asks-over-tcp", needs: settings, run: func(r *rt) {
		e := r.world("", nil, "options use-vc")
		e.srv.Add("vc.test. 60 IN A 127.0.0.41")
		ai, err := r.lookup(e.resolver, "vc.test", v4Stream)
		require.NoError(r, err)
		assert.Equal(r, []string{"127.0.0.41"}, addrStrings(ai))
		assert.Zero(r, e.srv.UDPQueries(), "rule: options use-vc sends no UDP")
	}},
	{name: "resolver/failover-to-the-next-server", needs: settings, run: func(r *rt) {
		silent, failing, good := dnstest.Start(r), dnstest.Start(r), dnstest.Start(r)
		silent.SetMode("f.test", dnstest.Silent)
		failing.SetMode("f.test", dnstest.ServFail)
		good.Add("f.test. 60 IN A 127.0.0.50")
		e := r.world("", []netip.AddrPort{silent.Addr, failing.Addr, good.Addr})
		start := time.Now()
		ai, err := r.lookup(e.resolver, "f.test", v4Stream)
		require.NoError(r, err, "rule: a silent or failing server is passed over for the next")
		assert.Equal(r, []string{"127.0.0.50"}, addrStrings(ai))
		assert.Equal(r, 1, silent.Queries("f.test", dns.TypeA))
		assert.Equal(r, 1, failing.Queries("f.test", dns.TypeA))
		assert.Less(r, time.Since(start), badAnswerLimit+caseTimeout, "rule: a silent server costs one timeout")
	}},
	{name: "resolver/rotate-spreads-queries", needs: settings, run: func(r *rt) {
		a, b := dnstest.Start(r), dnstest.Start(r)
		for _, s := range []*dnstest.Server{a, b} {
			for _, n := range []string{"r1", "r2", "r3", "r4"} {
				s.Add(n + ".test. 60 IN A 127.0.0.51")
			}
		}
		e := r.world("", []netip.AddrPort{a.Addr, b.Addr}, "options rotate")
		for _, n := range []string{"r1", "r2", "r3", "r4"} {
			_, err := r.lookup(e.resolver, n+".test", v4Stream)
			require.NoError(r, err)
		}
		assert.Positive(r, a.UDPQueries(), "rule: options rotate asks every server in turn")
		assert.Positive(r, b.UDPQueries(), "rule: options rotate asks every server in turn")
	}},
	{name: "resolver/ttl-expiry", needs: settings, run: func(r *rt) {
		e := r.world("", nil)
		e.srv.Add("ttl.test. 1 IN A 127.0.0.60")
		for range 3 {
			_, err := r.lookup(e.resolver, "ttl.test", v4Stream)
			require.NoError(r, err)
		}
		assert.Equal(r, 1, e.srv.Queries("ttl.test", dns.TypeA), "rule: an answer is kept for its TTL")
		e.srv.Remove("ttl.test")
		e.srv.Add("ttl.test. 1 IN A 127.0.0.61")
		time.Sleep(1100 * time.Millisecond)
		ai, err := r.lookup(e.resolver, "ttl.test", v4Stream)
		require.NoError(r, err)
		assert.Equal(r, []string{"127.0.0.61"}, addrStrings(ai), "rule: an answer is not kept past its TTL")
		assert.Equal(r, 2, e.srv.Queries("ttl.test", dns.TypeA))
	}},
	{name: "resolver/negative-caching", needs: settings, run: func(r *rt) {
		e := r.world("", nil)
		e.srv.SetNegativeTTL(1)
		for range 3 {
			_, err := r.lookup(e.resolver, "nx.test.", v4Stream)
			var de *net.DNSError
			require.ErrorAs(r, err, &de)
			assert.True(r, de.IsNotFound, "rule: NXDOMAIN is IsNotFound: %v", de)
		}
		assert.Equal(r, 1, e.srv.Queries("nx.test", dns.TypeA), "rule: NXDOMAIN is kept for the SOA minimum (RFC 2308)")
		e.srv.Add("nx.test. 60 IN A 127.0.0.70")
		time.Sleep(1100 * time.Millisecond)
		ai, err := r.lookup(e.resolver, "nx.test.", v4Stream)
		require.NoError(r, err, "rule: a negative answer is not kept past the SOA minimum")
		assert.Equal(r, []string{"127.0.0.70"}, addrStrings(ai))

		// NODATA: the name exists without AAAA.
		_, err = r.lookup(e.resolver, "nx.test.", sdk.AddrinfoHints{Family: syscall.AF_INET6, SockType: syscall.SOCK_STREAM})
		require.Error(r, err)
		_, err = r.lookup(e.resolver, "nx.test.", sdk.AddrinfoHints{Family: syscall.AF_INET6, SockType: syscall.SOCK_STREAM})
		require.Error(r, err)
		assert.Equal(r, 1, e.srv.Queries("nx.test", dns.TypeAAAA), "rule: NODATA is kept for the SOA minimum too")
	}},
	{name: "resolver/concurrent-lookups-merged", needs: settings, run: func(r *rt) {
		e := r.worldT(5*time.Second, "", nil)
		e.srv.Add("m.test. 0 IN A 127.0.0.80") // TTL 0: only merging can save a query
		// Long enough for all of them to arrive while the first is asked,
		// on a loaded machine.
		e.srv.SetDelay(800 * time.Millisecond)
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				ai, err := r.lookup(e.resolver, "m.test", v4Stream)
				if assert.NoError(r, err) {
					assert.Equal(r, []string{"127.0.0.80"}, addrStrings(ai))
				}
			})
		}
		wg.Wait()
		assert.Equal(r, 1, e.srv.Queries("m.test", dns.TypeA), "rule: concurrent lookups of one name share one query")
	}},
	{name: "resolver/silent-server-times-out", needs: settings, run: func(r *rt) {
		e := r.world("", nil)
		e.srv.SetMode("s.test", dnstest.Silent)
		start := time.Now()
		_, err := r.lookup(e.resolver, "s.test", v4Stream)
		took := time.Since(start)
		var de *net.DNSError
		require.ErrorAs(r, err, &de, "rule: a server that never answers gives a *net.DNSError")
		assert.True(r, de.IsTimeout, "rule: silence is IsTimeout: %v", de)
		assert.Less(r, took, badAnswerLimit, "rule: within the configured timeout (%v)", caseTimeout)
		_, _ = r.lookup(e.resolver, "s.test", v4Stream)
		assert.Equal(r, 2, e.srv.Queries("s.test", dns.TypeA), "rule: a timeout is not cached")
		// The server answers now: so must the resolver.
		e.srv.Add("s.test. 60 IN A 127.0.0.62")
		e.srv.SetMode("s.test", dnstest.Answer)
		ai, err := r.lookup(e.resolver, "s.test", v4Stream)
		require.NoError(r, err, "rule: a timeout is not cached: the lookup after the server answers again succeeds")
		assert.Equal(r, []string{"127.0.0.62"}, addrStrings(ai))
	}},
	{name: "resolver/no-server-listening-fails-fast", needs: settings, run: func(r *rt) {
		// A port nothing listens on: bind one, note it, close it.
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		require.NoError(r, err)
		closed := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		pc.Close()
		e := r.worldT(5*time.Second, "", []netip.AddrPort{closed})
		start := time.Now()
		_, err = r.lookup(e.resolver, "gone.test", v4Stream)
		var de *net.DNSError
		require.ErrorAs(r, err, &de, "rule: a server that refuses gives a *net.DNSError")
		assert.Contains(r, de.Err, closed.String(), "rule: the error names the server")
		assert.Less(r, time.Since(start), 4*time.Second, "rule: a refused port is not waited on for the whole timeout")
	}},
	{name: "resolver/bad-answers-fail-clearly-and-are-not-cached", needs: settings, run: func(r *rt) {
		for _, bad := range []struct {
			mode dnstest.Mode
			what string
		}{
			{dnstest.WrongID, "wrong ID"},
			{dnstest.Malformed, "malformed"},
			{dnstest.Oversized, "oversized"},
			{dnstest.WrongName, "answers"},
		} {
			e := r.world("", nil)
			e.srv.Add("bad.test. 60 IN A 127.0.0.90")
			e.srv.SetMode("bad.test", bad.mode)
			start := time.Now()
			_, err := r.lookup(e.resolver, "bad.test", v4Stream)
			var de *net.DNSError
			if !assert.ErrorAs(r, err, &de, "rule: a %s answer gives a *net.DNSError", bad.what) {
				continue
			}
			assert.Contains(r, de.Err, bad.what, "rule: the error says what was wrong with the answer")
			assert.Less(r, time.Since(start), badAnswerLimit, "rule: a %s answer fails within the timeout", bad.what)
			e.srv.SetMode("bad.test", dnstest.Answer)
			ai, err := r.lookup(e.resolver, "bad.test", v4Stream)
			if assert.NoError(r, err, "rule: a bad answer is not cached (%s)", bad.what) {
				assert.Equal(r, []string{"127.0.0.90"}, addrStrings(ai))
			}
		}
	}},
	{name: "resolver/forged-reply-from-another-address-ignored", needs: settings, run: func(r *rt) {
		e := r.world("", nil)
		e.srv.Add("forged.test. 60 IN A 127.0.0.91")
		e.srv.SetMode("forged.test", dnstest.Forged)
		ai, err := r.lookup(e.resolver, "forged.test", v4Stream)
		require.NoError(r, err)
		assert.Equal(r, []string{"127.0.0.91"}, addrStrings(ai), "rule: a reply from an address other than the server's is ignored")
		e.srv.SetMode("forged.test", dnstest.Answer)
		ai, err = r.lookup(e.resolver, "forged.test", v4Stream)
		require.NoError(r, err)
		assert.Equal(r, []string{"127.0.0.91"}, addrStrings(ai), "rule: the forged address never reaches the cache")
	}},
	{name: "resolver/canonical-name-follows-cname", needs: settings, run: func(r *rt) {
		e := r.world("", nil)
		e.srv.Add("alias.test. 60 IN CNAME real.test.", "real.test. 60 IN A 127.0.0.100")
		ai, err := r.lookup(e.resolver, "alias.test", sdk.AddrinfoHints{Family: syscall.AF_INET, SockType: syscall.SOCK_STREAM, Flags: sdk.AICanonName})
		require.NoError(r, err)
		assert.Equal(r, []string{"127.0.0.100"}, addrStrings(ai))
		assert.Equal(r, "real.test", ai[0].CanonName, "rule: AI_CANONNAME names the end of the CNAME chain")
	}},
	{name: "resolver/both-families-in-rfc6724-order", needs: settings, run: func(r *rt) {
		srv := dnstest.Start(r)
		srv.Add("two.test. 60 IN A 127.0.0.110", "two.test. 60 IN AAAA ::1")
		// Each answer waits 1s: asked one after the other, the two would
		// take 2s.
		srv.SetDelay(time.Second)
		e := r.worldOn(srv, 5*time.Second)
		start := time.Now()
		ai, err := r.lookup(e.resolver, "two.test", anyTCP)
		took := time.Since(start)
		require.NoError(r, err)
		assert.Less(r, took, 1900*time.Millisecond, "rule: A and AAAA are asked in parallel")
		assert.Equal(r, 2, e.srv.EDNSQueries(), "rule: queries carry EDNS0")
		got := addrStrings(ai)
		assert.ElementsMatch(r, []string{"127.0.0.110", "::1"}, got, "rule: A and AAAA are both asked")
		if kernelSource(netip.IPv6Loopback()) {
			assert.Equal(r, "::1", got[0], "rule: RFC 6724 puts ::1 (precedence 50) before IPv4 (35)")
		}
	}},
	{name: "resolver/getnameinfo-by-ptr", needs: settings, run: func(r *rt) {
		e := r.world("", nil)
		e.srv.Add("120.0.0.127.in-addr.arpa. 60 IN PTR ptr.test.")
		ni, err := e.resolver.Getnameinfo(r.Context(), netip.MustParseAddrPort("127.0.0.120:8080"), sdk.NINumericServ)
		require.NoError(r, err)
		assert.Equal(r, sdk.NameInfo{Host: "ptr.test", Service: "8080"}, ni, "rule: getnameinfo asks for the PTR record")
		if services, _ := os.ReadFile("/etc/services"); strings.Contains(string(services), "\nhttp\t") || strings.Contains(string(services), "\nhttp ") {
			ni, err = e.resolver.Getnameinfo(r.Context(), netip.MustParseAddrPort("127.0.0.120:80"), 0)
			require.NoError(r, err)
			assert.Equal(r, "http", ni.Service, "rule: the service name comes from the services database")
		}
		ni, err = e.resolver.Getnameinfo(r.Context(), netip.MustParseAddrPort("127.0.0.120:8080"), sdk.NINumericServ|sdk.NINoFQDN)
		require.NoError(r, err)
		assert.Equal(r, "ptr", ni.Host, "rule: NI_NOFQDN keeps the first label")

		ni, err = e.resolver.Getnameinfo(r.Context(), netip.MustParseAddrPort("127.0.0.121:1"), sdk.NINumericServ)
		require.NoError(r, err)
		assert.Equal(r, "127.0.0.121", ni.Host, "rule: an address without a name comes back numeric")
		_, err = e.resolver.Getnameinfo(r.Context(), netip.MustParseAddrPort("127.0.0.121:1"), sdk.NINameReqd)
		var de *net.DNSError
		require.ErrorAs(r, err, &de, "rule: NI_NAMEREQD fails for an address without a name")
	}},
	{name: "resolver/plugin-killed-with-lookups-in-flight", needs: []string{capSettings, capProcess}, run: func(r *rt) {
		// A timeout longer than the server's delay: the lookups must end
		// by the kill, not by their own timeout.
		e := r.worldT(5*time.Second, "", nil)
		e.srv.Add("k.test. 60 IN A 127.0.0.130")
		// Answers wait 3s, so the lookups are still in flight when the kill
		// (a control-plane call, then the signal) lands, however loaded
		// the machine.
		e.srv.SetDelay(3 * time.Second)
		errs := make(chan error, 8)
		for i := range 8 {
			go func() {
				_, err := r.lookup(e.resolver, "k"+string(rune('a'+i))+".test", v4Stream)
				errs <- err
			}()
		}
		waitFor(r, "the lookups reach the server", func() bool { return e.srv.UDPQueries() >= 8 })
		r.AllowIncidents("the case kills the plugin with lookups in flight")
		require.NoError(r, r.cfg.Kill(e.resolver))
		for range 8 {
			select {
			case err := <-errs:
				require.Error(r, err, "rule: a lookup in flight when the plugin dies fails")
				assert.True(r, errors.Is(err, sdk.ErrBackendDied), "rule: it fails with sdk.ErrBackendDied: %v", err)
			case <-time.After(resolverRunLimit):
				r.Errorf("rule: a lookup in flight when the plugin dies fails promptly, not after %v", resolverRunLimit)
				r.FailNow()
			}
		}
		e.srv.SetDelay(0)
		ai, err := r.lookup(e.resolver, "k.test", v4Stream)
		require.NoError(r, err, "rule: the lookup after the death works (the plugin is restarted)")
		assert.Equal(r, []string{"127.0.0.130"}, addrStrings(ai))
	}},
}

// waitFor polls cond until it holds or netSettle passes; then the rule
// fails.
func waitFor(r *rt, rule string, cond func() bool) {
	deadline := time.Now().Add(netSettle)
	for !cond() {
		if time.Now().After(deadline) {
			r.Errorf("%s: not within %v", rule, netSettle)
			r.FailNow()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kernelSource reports whether this host can send to a (it has a route and
// a source address for it), which decides RFC 6724's rule 1.
func kernelSource(a netip.Addr) bool {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 9)))
	if err != nil {
		return false
	}
	c.Close()
	return true
}
