// Package resolver is the default name-resolution back-end: sdk.Resolver
// over Go's net.Resolver, with the getaddrinfo(3) behaviour asyncio users
// expect layered on top — one result per socket type, passive and loopback
// wildcards for an empty host, family filtering, IPv4-mapped results, port
// names and canonical names.
//
// Numeric hosts are answered without any lookup (Numeric); the kernel calls
// Numeric itself on the loop goroutine and only hands names to a Resolver,
// on its executor.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"

	"github.com/loopkernel/loopkernel/sdk"
)

// Messages of the C library's gai_strerror, used in the *net.DNSError
// values this package returns so a Python user sees familiar text.
const (
	msgNoName   = "Name or service not known"
	msgFamily   = "Address family for hostname not supported"
	msgSockType = "ai_socktype not supported"
	msgService  = "Servname not supported for ai_socktype"
	msgBadFlags = "Bad value for ai_flags"
)

// Resolver implements sdk.Resolver with Go's net.Resolver.
type Resolver struct {
	net *net.Resolver
	// ifaceFamilies reports whether a non-loopback IPv4 and IPv6 address is
	// configured; AIAddrConfig filters by it. A field so tests can pin it.
	ifaceFamilies func() (v4, v6 bool)
}

var _ sdk.Resolver = (*Resolver)(nil)

// New returns a resolver that looks names up with r (net.DefaultResolver
// when r is nil).
func New(r *net.Resolver) *Resolver {
	if r == nil {
		r = net.DefaultResolver
	}
	return &Resolver{net: r, ifaceFamilies: configuredFamilies}
}

// sockProto is one (socket type, protocol) pair a result is produced for.
type sockProto struct{ sockType, proto int }

var (
	stream = sockProto{syscall.SOCK_STREAM, syscall.IPPROTO_TCP}
	dgram  = sockProto{syscall.SOCK_DGRAM, syscall.IPPROTO_UDP}
	raw    = sockProto{syscall.SOCK_RAW, 0}
)

// sockProtos expands the hints into the socket types getaddrinfo(3) returns
// one result each for: all three when nothing is specified.
func sockProtos(h sdk.AddrinfoHints) ([]sockProto, error) {
	switch h.SockType {
	case 0:
		switch h.Protocol {
		case 0:
			return []sockProto{stream, dgram, raw}, nil
		case syscall.IPPROTO_TCP:
			return []sockProto{stream}, nil
		case syscall.IPPROTO_UDP:
			return []sockProto{dgram}, nil
		}
		return []sockProto{{syscall.SOCK_RAW, h.Protocol}}, nil
	case syscall.SOCK_STREAM:
		if h.Protocol == 0 || h.Protocol == syscall.IPPROTO_TCP {
			return []sockProto{stream}, nil
		}
	case syscall.SOCK_DGRAM:
		if h.Protocol == 0 || h.Protocol == syscall.IPPROTO_UDP {
			return []sockProto{dgram}, nil
		}
	case syscall.SOCK_RAW:
		return []sockProto{{syscall.SOCK_RAW, h.Protocol}}, nil
	}
	return nil, &net.DNSError{Err: msgSockType, Name: fmt.Sprintf("type %d proto %d", h.SockType, h.Protocol)}
}

// checkHints rejects what getaddrinfo(3) rejects before any lookup.
func checkHints(h sdk.AddrinfoHints) error {
	switch h.Family {
	case syscall.AF_UNSPEC, syscall.AF_INET, syscall.AF_INET6:
	default:
		return &net.DNSError{Err: "ai_family not supported", Name: strconv.Itoa(h.Family)}
	}
	const known = sdk.AIPassive | sdk.AICanonName | sdk.AINumericHost | sdk.AIV4Mapped |
		sdk.AIAll | sdk.AIAddrConfig | sdk.AINumericServ
	if h.Flags&^known != 0 {
		return &net.DNSError{Err: msgBadFlags, Name: fmt.Sprintf("%#x", h.Flags)}
	}
	return nil
}

// numericPort parses a port given as a number ("" is port 0). ok is false
// when port is a service name.
func numericPort(port string) (p uint16, ok bool, err error) {
	if port == "" {
		return 0, true, nil
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err == nil {
		return uint16(n), true, nil
	}
	if port[0] >= '0' && port[0] <= '9' {
		// Digits that do not make a port: out of range or trailing junk.
		return 0, false, &net.DNSError{Err: msgService, Name: port}
	}
	return 0, false, nil
}

// Numeric answers a query that needs no lookup: a numeric or empty host and
// a numeric or empty port. ok is false when host or port is a name; then
// the query must go to a Resolver. A numeric query that getaddrinfo(3)
// would fail (a family mismatch, bad hints) returns its error with ok true.
func Numeric(host, port string, hints sdk.AddrinfoHints) (ai []sdk.Addrinfo, ok bool, err error) {
	if err := checkHints(hints); err != nil {
		return nil, true, err
	}
	var addrs []netip.Addr
	numHost := true
	if host == "" {
		addrs = emptyHostAddrs(hints)
	} else if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if hints.Flags&sdk.AINumericHost != 0 {
		return nil, true, &net.DNSError{Err: msgNoName, Name: host, IsNotFound: true}
	} else {
		numHost = false
	}
	p, numPort, err := numericPort(port)
	if err != nil {
		return nil, true, err
	}
	if !numPort && hints.Flags&sdk.AINumericServ != 0 {
		return nil, true, &net.DNSError{Err: msgNoName, Name: port, IsNotFound: true}
	}
	if !numHost || !numPort {
		return nil, false, nil
	}
	addrs, err = filterFamily(host, addrs, hints)
	if err != nil {
		return nil, true, err
	}
	sps, err := sockProtos(hints)
	if err != nil {
		return nil, true, err
	}
	canon := ""
	if hints.Flags&sdk.AICanonName != 0 {
		canon = host
	}
	return expand(addrs, sps, func(sockProto) (uint16, bool) { return p, true }, canon), true, nil
}

// emptyHostAddrs is what an empty host means: wildcards for a passive
// (bind) query, loopback otherwise. IPv4 comes first, as with glibc's
// default gai.conf for these addresses.
func emptyHostAddrs(h sdk.AddrinfoHints) []netip.Addr {
	if h.Flags&sdk.AIPassive != 0 {
		return []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	}
	return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
}

// filterFamily keeps the addresses of the requested family, mapping IPv4
// into IPv6 when AIV4Mapped asks for it, and fails as getaddrinfo does when
// nothing of that family is left.
func filterFamily(host string, addrs []netip.Addr, h sdk.AddrinfoHints) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(addrs))
	switch h.Family {
	case syscall.AF_UNSPEC:
		out = append(out, addrs...)
	case syscall.AF_INET:
		for _, a := range addrs {
			if a.Is4() {
				out = append(out, a)
			}
		}
	case syscall.AF_INET6:
		var v4 []netip.Addr
		for _, a := range addrs {
			if a.Is4() {
				v4 = append(v4, a)
			} else {
				out = append(out, a)
			}
		}
		if h.Flags&sdk.AIV4Mapped != 0 && (len(out) == 0 || h.Flags&sdk.AIAll != 0) {
			for _, a := range v4 {
				out = append(out, netip.AddrFrom16(a.As16()))
			}
		}
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: msgFamily, Name: host}
	}
	return out, nil
}

// expand makes one result per address and socket type; portOf may drop a
// socket type for which the service has no port.
func expand(addrs []netip.Addr, sps []sockProto, portOf func(sockProto) (uint16, bool), canon string) []sdk.Addrinfo {
	out := make([]sdk.Addrinfo, 0, len(addrs)*len(sps))
	for _, a := range addrs {
		fam := syscall.AF_INET6
		if a.Is4() {
			fam = syscall.AF_INET
		}
		for _, sp := range sps {
			p, ok := portOf(sp)
			if !ok {
				continue
			}
			out = append(out, sdk.Addrinfo{
				Family: fam, SockType: sp.sockType, Protocol: sp.proto,
				Addr: netip.AddrPortFrom(a, p),
			})
		}
	}
	if len(out) > 0 {
		out[0].CanonName = canon
	}
	return out
}

// Getaddrinfo implements sdk.Resolver.
func (r *Resolver) Getaddrinfo(ctx context.Context, host, port string, hints sdk.AddrinfoHints) ([]sdk.Addrinfo, error) {
	if ai, ok, err := Numeric(host, port, hints); ok {
		if err == nil {
			ai, err = r.addrConfig(host, ai, hints)
		}
		return ai, err
	}
	sps, err := sockProtos(hints)
	if err != nil {
		return nil, err
	}
	portOf, err := r.servicePorts(ctx, port, sps)
	if err != nil {
		return nil, err
	}
	addrs := []netip.Addr(nil)
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if host == "" {
		addrs = emptyHostAddrs(hints)
	} else {
		network := "ip"
		switch {
		case hints.Family == syscall.AF_INET:
			network = "ip4"
		case hints.Family == syscall.AF_INET6 && hints.Flags&sdk.AIV4Mapped == 0:
			network = "ip6"
		}
		found, err := r.net.LookupNetIP(ctx, network, host)
		if err != nil {
			return nil, err
		}
		addrs = dedupe(found)
	}
	if addrs, err = filterFamily(host, addrs, hints); err != nil {
		return nil, err
	}
	canon := ""
	if hints.Flags&sdk.AICanonName != 0 {
		canon = r.canonName(ctx, host)
	}
	ai := expand(addrs, sps, portOf, canon)
	if len(ai) == 0 {
		return nil, &net.DNSError{Err: msgService, Name: port}
	}
	return r.addrConfig(host, ai, hints)
}

// servicePorts resolves a service name per protocol: "http" may name a TCP
// port and not a UDP one, and a raw socket has no service at all, so each
// socket type gets its own answer.
func (r *Resolver) servicePorts(ctx context.Context, port string, sps []sockProto) (func(sockProto) (uint16, bool), error) {
	p, numeric, err := numericPort(port)
	if err != nil {
		return nil, err
	}
	if numeric {
		return func(sockProto) (uint16, bool) { return p, true }, nil
	}
	var tcp, udp int = -1, -1
	var lastErr error
	for _, sp := range sps {
		var network string
		var dst *int
		switch sp.sockType {
		case syscall.SOCK_STREAM:
			network, dst = "tcp", &tcp
		case syscall.SOCK_DGRAM:
			network, dst = "udp", &udp
		default:
			continue
		}
		n, err := r.net.LookupPort(ctx, network, port)
		if err != nil {
			lastErr = err
			continue
		}
		*dst = n
	}
	if tcp < 0 && udp < 0 {
		if lastErr == nil {
			lastErr = &net.DNSError{Err: msgService, Name: port}
		}
		return nil, lastErr
	}
	return func(sp sockProto) (uint16, bool) {
		switch sp.sockType {
		case syscall.SOCK_STREAM:
			return uint16(tcp), tcp >= 0
		case syscall.SOCK_DGRAM:
			return uint16(udp), udp >= 0
		}
		return 0, false
	}, nil
}

// canonName is the host's canonical name, or the host itself when it has no
// CNAME or the lookup fails (glibc returns the name it resolved then).
func (r *Resolver) canonName(ctx context.Context, host string) string {
	if host == "" {
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return host
	}
	c, err := r.net.LookupCNAME(ctx, host)
	if err != nil || c == "" {
		return host
	}
	return strings.TrimSuffix(c, ".")
}

// addrConfig applies AIAddrConfig: a family is returned only if a
// non-loopback address of it is configured on this host.
func (r *Resolver) addrConfig(host string, ai []sdk.Addrinfo, hints sdk.AddrinfoHints) ([]sdk.Addrinfo, error) {
	if hints.Flags&sdk.AIAddrConfig == 0 {
		return ai, nil
	}
	v4, v6 := r.ifaceFamilies()
	out := ai[:0]
	for _, a := range ai {
		if (a.Family == syscall.AF_INET && v4) || (a.Family == syscall.AF_INET6 && v6) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: msgFamily, Name: host}
	}
	if hints.Flags&sdk.AICanonName != 0 && len(ai) > 0 {
		out[0].CanonName = ai[0].CanonName
	}
	return out, nil
}

func configuredFamilies() (v4, v6 bool) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true, true // unknown: do not filter
	}
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil || pfx.Addr().IsLoopback() {
			continue
		}
		if pfx.Addr().Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	return v4, v6
}

func dedupe(addrs []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	seen := make(map[netip.Addr]struct{}, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		if _, dup := seen[a]; dup {
			continue
		}
		seen[a] = struct{}{}
		out = append(out, a)
	}
	return out
}

// Getnameinfo implements sdk.Resolver.
func (r *Resolver) Getnameinfo(ctx context.Context, addr netip.AddrPort, flags int) (sdk.NameInfo, error) {
	const known = sdk.NINumericHost | sdk.NINumericServ | sdk.NINoFQDN | sdk.NINameReqd | sdk.NIDgram
	if flags&^known != 0 {
		return sdk.NameInfo{}, &net.DNSError{Err: msgBadFlags, Name: fmt.Sprintf("%#x", flags)}
	}
	if !addr.IsValid() {
		return sdk.NameInfo{}, &net.DNSError{Err: msgNoName, Name: addr.String(), IsNotFound: true}
	}
	host, err := r.hostName(ctx, addr.Addr(), flags)
	if err != nil {
		return sdk.NameInfo{}, err
	}
	return sdk.NameInfo{Host: host, Service: serviceName(addr.Port(), flags)}, nil
}

func (r *Resolver) hostName(ctx context.Context, a netip.Addr, flags int) (string, error) {
	numeric := a.String()
	if flags&sdk.NINumericHost != 0 {
		return numeric, nil
	}
	names, err := r.net.LookupAddr(ctx, a.WithZone("").String())
	var dnsErr *net.DNSError
	if err != nil && !(errors.As(err, &dnsErr) && dnsErr.IsNotFound) {
		return "", err
	}
	if len(names) == 0 {
		if flags&sdk.NINameReqd != 0 {
			return "", &net.DNSError{Err: msgNoName, Name: numeric, IsNotFound: true}
		}
		return numeric, nil
	}
	name := strings.TrimSuffix(names[0], ".")
	if flags&sdk.NINoFQDN != 0 {
		name, _, _ = strings.Cut(name, ".")
	}
	return name, nil
}

func serviceName(port uint16, flags int) string {
	if flags&sdk.NINumericServ == 0 {
		proto := "tcp"
		if flags&sdk.NIDgram != 0 {
			proto = "udp"
		}
		if name, ok := loadServices().byPort(proto, port); ok {
			return name
		}
	}
	return strconv.Itoa(int(port))
}
