package resolver

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Destination address selection (RFC 6724 section 6): the order in which a
// client should try a host's addresses. It needs, for each destination,
// the source address this host would use to reach it, which the kernel's
// routing decides: connecting a UDP socket (which sends nothing) and
// reading its local address asks it, as glibc and Go do.

// policyEntry is a row of RFC 6724's default policy table (section 2.1).
type policyEntry struct {
	prefix     netip.Prefix
	precedence uint8
	label      uint8
}

var policyTable = []policyEntry{
	// Longest prefixes first, so the first match is the longest.
	{netip.MustParsePrefix("::1/128"), 50, 0},
	{netip.MustParsePrefix("::ffff:0:0/96"), 35, 4},
	{netip.MustParsePrefix("::/96"), 1, 3},
	{netip.MustParsePrefix("2001::/32"), 5, 5},
	{netip.MustParsePrefix("2002::/16"), 30, 2},
	{netip.MustParsePrefix("3ffe::/16"), 1, 12},
	{netip.MustParsePrefix("fec0::/10"), 1, 11},
	{netip.MustParsePrefix("fc00::/7"), 3, 13},
	{netip.MustParsePrefix("::/0"), 40, 1},
}

// classify returns a's row of the policy table; IPv4 is looked up as its
// IPv4-mapped form (section 2.1).
func classify(a netip.Addr) policyEntry {
	a16 := netip.AddrFrom16(a.As16())
	for _, p := range policyTable {
		if p.prefix.Contains(a16) {
			return p
		}
	}
	return policyTable[len(policyTable)-1]
}

// Scopes of RFC 6724 section 3.1 (and RFC 4291's multicast scopes).
const (
	scopeLinkLocal = 0x2
	scopeSiteLocal = 0x5
	scopeGlobal    = 0xe
)

func scopeOf(a netip.Addr) uint8 {
	if a.Is4() || a.Is4In6() {
		a4 := a.Unmap()
		if a4.IsLoopback() || a4.IsLinkLocalUnicast() {
			return scopeLinkLocal
		}
		return scopeGlobal
	}
	if a.IsMulticast() {
		return a.As16()[1] & 0xf
	}
	if a.IsLoopback() || a.IsLinkLocalUnicast() {
		return scopeLinkLocal
	}
	if p := netip.MustParsePrefix("fec0::/10"); p.Contains(a) {
		return scopeSiteLocal
	}
	return scopeGlobal
}

// sourceFinder answers "which source address would reach dst", keeping
// each answer for a while so that sorting a cached answer makes no system
// call: routes change far less often than lookups happen.
type sourceFinder struct {
	keep time.Duration
	find func(dst netip.Addr) (netip.Addr, bool) // the kernel's answer; a field for tests

	mu   sync.Mutex
	memo map[netip.Addr]sourceMemo
}

type sourceMemo struct {
	src     netip.Addr
	ok      bool
	expires time.Time
}

// maxSourceMemo bounds the memo; past it the memo starts again.
const maxSourceMemo = 1024

func newSourceFinder() *sourceFinder {
	return &sourceFinder{keep: 10 * time.Second, find: kernelSource, memo: make(map[netip.Addr]sourceMemo)}
}

func (s *sourceFinder) source(dst netip.Addr) (netip.Addr, bool) {
	now := time.Now()
	s.mu.Lock()
	m, hit := s.memo[dst]
	s.mu.Unlock()
	if hit && now.Before(m.expires) {
		return m.src, m.ok
	}
	src, ok := s.find(dst)
	s.mu.Lock()
	if len(s.memo) >= maxSourceMemo {
		clear(s.memo)
	}
	s.memo[dst] = sourceMemo{src: src, ok: ok, expires: now.Add(s.keep)}
	s.mu.Unlock()
	return src, ok
}

// known reports whether the memo holds a fresh source for every address:
// then sortAddrs makes no system call, which a caller on the loop
// goroutine needs.
func (s *sourceFinder) known(addrs []netip.Addr) bool {
	if len(addrs) < 2 {
		return true
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range addrs {
		if m, hit := s.memo[a]; !hit || !now.Before(m.expires) {
			return false
		}
	}
	return true
}

// kernelSource asks the kernel's routing for the source address of dst.
func kernelSource(dst netip.Addr) (netip.Addr, bool) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
	if err != nil {
		return netip.Addr{}, false
	}
	defer c.Close()
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return ap.Addr().Unmap(), true
}

// sortAddrs orders addrs by RFC 6724's destination rules, stably, so equal
// addresses keep the server's order (which may be its load balancing).
// Rules 3, 4 and 7 (deprecated, home and native addresses) need what the
// kernel does not tell a socket and are skipped, as Go skips them; rule 9
// (longest matching prefix) is applied between IPv6 addresses only, as Go
// does, because between IPv4 addresses it defeats DNS round robin
// (RFC 6724 section 7 lets implementations do so).
func (s *sourceFinder) sortAddrs(addrs []netip.Addr) {
	if len(addrs) < 2 {
		return
	}
	type dest struct {
		addr, src netip.Addr
		srcOK     bool
		dp, sp    policyEntry
	}
	ds := make([]dest, len(addrs))
	for i, a := range addrs {
		src, ok := s.source(a)
		ds[i] = dest{addr: a, src: src, srcOK: ok, dp: classify(a)}
		if ok {
			ds[i].sp = classify(src)
		}
	}
	slices.SortStableFunc(ds, func(a, b dest) int {
		// Rule 1: avoid unusable destinations.
		if a.srcOK != b.srcOK {
			return boolFirst(a.srcOK)
		}
		if !a.srcOK {
			return 0
		}
		// Rule 2: prefer matching scope.
		am := scopeOf(a.addr) == scopeOf(a.src)
		bm := scopeOf(b.addr) == scopeOf(b.src)
		if am != bm {
			return boolFirst(am)
		}
		// Rule 5: prefer matching label.
		al, bl := a.dp.label == a.sp.label, b.dp.label == b.sp.label
		if al != bl {
			return boolFirst(al)
		}
		// Rule 6: prefer higher precedence.
		if a.dp.precedence != b.dp.precedence {
			return int(b.dp.precedence) - int(a.dp.precedence)
		}
		// Rule 8: prefer smaller scope.
		if sa, sb := scopeOf(a.addr), scopeOf(b.addr); sa != sb {
			return int(sa) - int(sb)
		}
		// Rule 9: longest matching prefix, IPv6 only.
		if a.addr.Is6() && b.addr.Is6() && !a.addr.Is4In6() && !b.addr.Is4In6() {
			return commonPrefix(b.addr, b.src) - commonPrefix(a.addr, a.src)
		}
		// Rule 10: otherwise keep the order.
		return 0
	})
	for i := range ds {
		addrs[i] = ds[i].addr
	}
}

func boolFirst(a bool) int {
	if a {
		return -1
	}
	return 1
}

// commonPrefix is the length in bits of the prefix a and b share, within
// the 64-bit prefix RFC 6724 section 2.2 bounds it to.
func commonPrefix(a, b netip.Addr) int {
	x, y := a.As16(), b.As16()
	n := 0
	for i := range 8 {
		d := x[i] ^ y[i]
		if d == 0 {
			n += 8
			continue
		}
		for d&0x80 == 0 {
			n++
			d <<= 1
		}
		break
	}
	return n
}
