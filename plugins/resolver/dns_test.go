package resolver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/internal/dnstest"
	"github.com/loopkernel/loopkernel/sdk"
)

// newTestDNS is a DNS resolver on its own resolv.conf (the servers given,
// timeout 300ms, one attempt) and an empty hosts file.
func newTestDNS(t *testing.T, servers []netip.AddrPort, lines ...string) (*DNS, string) {
	t.Helper()
	dir := t.TempDir()
	conf, err := dnstest.ResolvConf(dir, servers, append([]string{"options attempts:1"}, lines...)...)
	require.NoError(t, err)
	hosts := filepath.Join(dir, "hosts")
	require.NoError(t, os.WriteFile(hosts, nil, 0o644))
	d := NewDNS(DNSOptions{ResolvConf: conf, Hosts: hosts, Timeout: 300 * time.Millisecond, CheckInterval: time.Millisecond})
	return d, dir
}

var stream = sdk.AddrinfoHints{SockType: syscall.SOCK_STREAM}

func TestDNSAnswersAAndAAAAInRFC6724Order(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("both.test. 60 IN A 127.0.0.7", "both.test. 60 IN AAAA ::1")
	d, _ := newTestDNS(t, []netip.AddrPort{srv.Addr})
	d.order.find = func(dst netip.Addr) (netip.Addr, bool) { return dst, true } // loopback reaches itself
	ai, err := d.Getaddrinfo(context.Background(), "both.test", "80", stream)
	require.NoError(t, err)
	// ::1 has precedence 50, IPv4 (as ::ffff:0:0/96) 35.
	assert.Equal(t, []string{"[::1]:80", "127.0.0.7:80"}, addrs(ai))
	assert.Equal(t, 1, srv.Queries("both.test", dns.TypeA))
	assert.Equal(t, 1, srv.Queries("both.test", dns.TypeAAAA))

	// Cached: no new query.
	_, err = d.Getaddrinfo(context.Background(), "both.test", "80", stream)
	require.NoError(t, err)
	assert.Equal(t, 1, srv.Queries("both.test", dns.TypeA))
}

func TestRFC6724Rules(t *testing.T) {
	s := newSourceFinder()
	s.find = func(dst netip.Addr) (netip.Addr, bool) {
		switch {
		case dst.Is4():
			return netip.MustParseAddr("10.0.0.1"), true
		case dst == netip.MustParseAddr("2001:db8::1"):
			return netip.Addr{}, false // no IPv6 route
		}
		return netip.MustParseAddr("2a00::5"), true
	}
	in := []netip.Addr{
		netip.MustParseAddr("2001:db8::1"),  // unusable: last
		netip.MustParseAddr("192.0.2.1"),    // precedence 35
		netip.MustParseAddr("2a00::1"),      // precedence 40, matching label
		netip.MustParseAddr("2a01:ffff::1"), // same, shorter common prefix with 2a00::5
	}
	s.sortAddrs(in)
	assert.Equal(t, []string{"2a00::1", "2a01:ffff::1", "192.0.2.1", "2001:db8::1"}, strs(in))
}

func strs(a []netip.Addr) []string {
	var out []string
	for _, x := range a {
		out = append(out, x.String())
	}
	return out
}

func TestResolvConfParse(t *testing.T) {
	c := parseResolvConf([]byte(`# comment
nameserver 10.0.0.1
nameserver [::1]:5353
nameserver 127.0.0.1:5300
nameserver 10.0.0.4
search a.example b.example.
options ndots:3 timeout:2 attempts:9 rotate use-vc edns0 bogus
`), "host.local.example")
	assert.Equal(t, []netip.AddrPort{
		netip.MustParseAddrPort("10.0.0.1:53"), netip.MustParseAddrPort("[::1]:5353"), netip.MustParseAddrPort("127.0.0.1:5300"),
	}, c.servers)
	assert.Equal(t, []string{"a.example", "b.example"}, c.search)
	assert.Equal(t, 3, c.ndots)
	assert.Equal(t, 2*time.Second, c.timeout)
	assert.Equal(t, maxAttempts, c.attempts)
	assert.True(t, c.rotate)
	assert.True(t, c.useVC)

	c = parseResolvConf(nil, "host.local.example")
	assert.Equal(t, []string{"local.example"}, c.search)
	assert.Len(t, c.servers, 2)
	assert.Equal(t, defaultNdots, c.ndots)
}

func TestCandidates(t *testing.T) {
	c := &resolvConf{search: []string{"a.test", "b.test"}, ndots: 1}
	assert.Equal(t, []string{"x.a.test.", "x.b.test.", "x."}, candidates("x", c))
	assert.Equal(t, []string{"x.y.", "x.y.a.test.", "x.y.b.test."}, candidates("X.y", c))
	assert.Equal(t, []string{"x.y."}, candidates("x.y.", c))
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := newCache(2, time.Hour, time.Hour)
	ctx := context.Background()
	fetches := 0
	get := func(name string) {
		_, err := c.lookup(ctx, cacheKey{name, dns.TypeA}, func(context.Context) (*answer, error) {
			fetches++
			return &answer{addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, ttl: 60}, nil
		})
		require.NoError(t, err)
	}
	get("a.")
	get("b.")
	get("a.") // a is now the most recent
	get("c.") // evicts b
	assert.Equal(t, 3, fetches)
	get("a.")
	assert.Equal(t, 3, fetches)
	get("b.")
	assert.Equal(t, 4, fetches)
	assert.Equal(t, 2, c.len())
	assert.Equal(t, uint64(2), c.evictions.Load())
}

func TestCacheMergesConcurrentLookups(t *testing.T) {
	c := newCache(10, time.Hour, time.Hour)
	release := make(chan struct{})
	var fetches int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, err := c.lookup(context.Background(), cacheKey{"m.", dns.TypeA}, func(context.Context) (*answer, error) {
				mu.Lock()
				fetches++
				mu.Unlock()
				<-release
				return &answer{ttl: 0, addrs: []netip.Addr{netip.IPv6Loopback()}}, nil
			})
			assert.NoError(t, err)
		})
	}
	require.Eventually(t, func() bool { return c.merged.Load()+c.misses.Load() == 20 }, 5*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	assert.Equal(t, 1, fetches)
}

func TestCacheKeepsNoError(t *testing.T) {
	c := newCache(10, time.Hour, time.Hour)
	boom := errors.New("boom")
	for range 2 {
		_, err := c.lookup(context.Background(), cacheKey{"e.", dns.TypeA}, func(context.Context) (*answer, error) { return nil, boom })
		assert.ErrorIs(t, err, boom)
	}
	assert.Equal(t, uint64(2), c.misses.Load())
	assert.Equal(t, 0, c.len())
}

func TestNameTooLong(t *testing.T) {
	d, _ := newTestDNS(t, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")})
	long := ""
	for range 5 {
		long += "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	}
	_, err := d.Getaddrinfo(context.Background(), long+"test", "80", stream)
	var de *net.DNSError
	require.ErrorAs(t, err, &de)
	assert.Contains(t, de.Err, "name too long")
}

func TestParseAnswerRejectsGarbage(t *testing.T) {
	_, err := parseAnswer([]byte{0, 1, 0x81, 0x80, 0, 1, 0, 5, 0, 0, 0, 0, 0xff})
	assert.ErrorContains(t, err, "malformed")
}

// FuzzParseAnswer feeds arbitrary bytes through the path every server
// answer takes: parsing, the question check, and the extraction of what
// the cache would keep. Nothing may panic, and what is extracted must only
// be records of the asked name and type.
func FuzzParseAnswer(f *testing.F) {
	q := newQuery("f.test.", dns.TypeA, true)
	good := new(dns.Msg)
	good.SetReply(q)
	rr, _ := dns.NewRR("f.test. 60 IN A 127.0.0.1")
	cn, _ := dns.NewRR("f.test. 60 IN CNAME g.test.")
	good.Answer = append(good.Answer, cn, rr)
	b, _ := good.Pack()
	f.Add(b)
	nx := new(dns.Msg)
	nx.SetRcode(q, dns.RcodeNameError)
	soa, _ := dns.NewRR("test. 30 IN SOA ns.test. h.test. 1 2 3 4 5")
	nx.Ns = append(nx.Ns, soa)
	b, _ = nx.Pack()
	f.Add(b)
	f.Add([]byte{0, 1, 0x81, 0x80, 0, 1, 0, 5, 0, 0, 0, 0, 0xff})
	srv := netip.MustParseAddrPort("127.0.0.1:53")
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= 2 {
			b[0], b[1] = byte(q.Id>>8), byte(q.Id)
		}
		m, err := checkAnswer(srv, q, b)
		if err != nil {
			var ae *answerError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v is not an answerError", err)
			}
			return
		}
		a := answerOf(m, "f.test.", dns.TypeA)
		for _, x := range a.addrs {
			if !x.Is4() {
				t.Fatalf("A answer holds %v", x)
			}
		}
		if a.negative() && !a.negCacheable && a.ttl != 0 {
			t.Fatalf("negative answer without SOA kept for %d s", a.ttl)
		}
	})
}

// BenchmarkDNSCached is a cached lookup: the hosts file and resolv.conf
// checked (at most once per CheckInterval), the cache hit, the results
// built.
func BenchmarkDNSCached(b *testing.B) {
	srv := dnstest.Start(b)
	srv.Add("c.test. 3600 IN A 127.0.0.1")
	dir := b.TempDir()
	conf, err := dnstest.ResolvConf(dir, []netip.AddrPort{srv.Addr})
	require.NoError(b, err)
	d := NewDNS(DNSOptions{ResolvConf: conf, Hosts: filepath.Join(dir, "hosts")})
	ctx := context.Background()
	hints := sdk.AddrinfoHints{Family: syscall.AF_INET, SockType: syscall.SOCK_STREAM}
	_, err = d.Getaddrinfo(ctx, "c.test", "80", hints)
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Getaddrinfo(ctx, "c.test", "80", hints); err != nil {
			b.Fatal(err)
		}
	}
}

func TestGetaddrinfoCachedOnlyAnswersFromMemory(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("m.test. 60 IN A 127.0.0.3")
	d, _ := newTestDNS(t, []netip.AddrPort{srv.Addr})
	d.state.Load().conf.next.Store(time.Now().Add(time.Hour).UnixNano()) // not due for a check
	d.state.Load().hosts.next.Store(time.Now().Add(time.Hour).UnixNano())
	h := sdk.AddrinfoHints{Family: syscall.AF_INET, SockType: syscall.SOCK_STREAM}
	_, ok := d.GetaddrinfoCached("m.test", "80", h)
	assert.False(t, ok, "a miss is not answered from memory")
	assert.Zero(t, srv.Queries("m.test", dns.TypeA), "GetaddrinfoCached asks no server")
	_, err := d.Getaddrinfo(context.Background(), "m.test", "80", h)
	require.NoError(t, err)
	ai, ok := d.GetaddrinfoCached("m.test", "80", h)
	require.True(t, ok)
	assert.Equal(t, []string{"127.0.0.3:80"}, addrs(ai))
	_, ok = d.GetaddrinfoCached("m.test", "http", h)
	assert.False(t, ok, "a service name takes the slow path")
	_, ok = d.GetaddrinfoCached("m.test", "80", sdk.AddrinfoHints{Flags: sdk.AIAddrConfig})
	assert.False(t, ok, "AI_ADDRCONFIG takes the slow path")
	d.state.Load().hosts.next.Store(0)
	_, ok = d.GetaddrinfoCached("m.test", "80", h)
	assert.False(t, ok, "a file due for its check takes the slow path")
	d.state.Load().hosts.next.Store(time.Now().Add(time.Hour).UnixNano())

	// Two addresses need sorting, which needs their source addresses: from
	// the memo only.
	srv.Add("two.test. 60 IN A 127.0.0.4", "two.test. 60 IN A 127.0.0.5")
	_, err = d.Getaddrinfo(context.Background(), "two.test", "80", h)
	require.NoError(t, err)
	_, ok = d.GetaddrinfoCached("two.test", "80", h)
	assert.True(t, ok)
	d.order.mu.Lock()
	clear(d.order.memo)
	d.order.mu.Unlock()
	_, ok = d.GetaddrinfoCached("two.test", "80", h)
	assert.False(t, ok, "sorting that would ask the kernel takes the slow path")
}

// BenchmarkUncached compares a lookup with the cache off against Go's
// net.Resolver asking the same server (it has no cache): the cost of the
// exchange itself.
func BenchmarkUncached(b *testing.B) {
	srv := dnstest.Start(b)
	srv.Add("u.test. 3600 IN A 127.0.0.1")
	dir := b.TempDir()
	conf, err := dnstest.ResolvConf(dir, []netip.AddrPort{srv.Addr})
	require.NoError(b, err)
	ctx := context.Background()
	b.Run("dns", func(b *testing.B) {
		d := NewDNS(DNSOptions{ResolvConf: conf, Hosts: filepath.Join(dir, "hosts"), CacheSize: -1})
		hints := sdk.AddrinfoHints{Family: syscall.AF_INET, SockType: syscall.SOCK_STREAM}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.Getaddrinfo(ctx, "u.test", "80", hints); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-net", func(b *testing.B) {
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, srv.Addr.String())
		}}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.LookupNetIP(ctx, "ip4", "u.test"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
