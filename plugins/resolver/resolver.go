// Package resolver holds the bundled name-resolution back-ends, each an
// sdk.Resolver with the getaddrinfo(3) behaviour asyncio users expect — one
// result per socket type, passive and loopback wildcards for an empty host,
// family filtering, IPv4-mapped results, port names and canonical names:
//
//   - "go" (sdk.DefaultResolver, resolver.go): Go's net.Resolver;
//   - "dns" (dns*.go): the project's own stub resolver on miekg/dns, with
//     resolv.conf and hosts read again when they change, a TTL and negative
//     cache that merges concurrent lookups, and RFC 6724 ordering.
//
// Numeric hosts are answered without any lookup (internal/addrinfo); the
// kernel answers them itself on the loop goroutine and only hands names to a
// Resolver, on its executor (or takes a cached answer from an
// sdk.CachedResolver on the loop goroutine). The package imports sdk and
// internal/addrinfo, never the kernel or the plugin host.
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

	"github.com/loopkernel/loopkernel/internal/addrinfo"
	"github.com/loopkernel/loopkernel/sdk"
)

// Resolver implements sdk.Resolver with Go's net.Resolver.
type Resolver struct {
	net *net.Resolver
	// ifaceFamilies reports whether a non-loopback IPv4 and IPv6 address is
	// configured; AIAddrConfig filters by it. A field so tests can pin it.
	ifaceFamilies func() (v4, v6 bool)
}

var _ sdk.Resolver = (*Resolver)(nil)

// Go's resolver registers itself as the default resolver back-end, so any
// program that imports this package (a policy does) resolves names.
func init() {
	sdk.Resolvers.Register(sdk.DefaultResolver, func() (sdk.Resolver, error) { return New(nil), nil })
}

// New returns a resolver that looks names up with r (net.DefaultResolver
// when r is nil).
func New(r *net.Resolver) *Resolver {
	if r == nil {
		r = net.DefaultResolver
	}
	return &Resolver{net: r, ifaceFamilies: configuredFamilies}
}

// Getaddrinfo implements sdk.Resolver.
func (r *Resolver) Getaddrinfo(ctx context.Context, host, port string, hints sdk.AddrinfoHints) ([]sdk.Addrinfo, error) {
	if ai, ok, err := addrinfo.Numeric(host, port, hints); ok {
		if err == nil {
			ai, err = r.addrConfig(host, ai, hints)
		}
		return ai, err
	}
	sps, err := addrinfo.SockProtos(hints)
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
		addrs = addrinfo.EmptyHostAddrs(hints)
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
	if addrs, err = addrinfo.FilterFamily(host, addrs, hints); err != nil {
		return nil, err
	}
	canon := ""
	if hints.Flags&sdk.AICanonName != 0 {
		canon = r.canonName(ctx, host)
	}
	ai := addrinfo.Expand(addrs, sps, portOf, canon)
	if len(ai) == 0 {
		return nil, &net.DNSError{Err: addrinfo.MsgService, Name: port}
	}
	return r.addrConfig(host, ai, hints)
}

// servicePorts resolves a service name per protocol: "http" may name a TCP
// port and not a UDP one, and a raw socket has no service at all, so each
// socket type gets its own answer.
func (r *Resolver) servicePorts(ctx context.Context, port string, sps []addrinfo.SockProto) (func(addrinfo.SockProto) (uint16, bool), error) {
	p, numeric, err := addrinfo.NumericPort(port)
	if err != nil {
		return nil, err
	}
	if numeric {
		return func(addrinfo.SockProto) (uint16, bool) { return p, true }, nil
	}
	var tcp, udp int = -1, -1
	var lastErr error
	for _, sp := range sps {
		var network string
		var dst *int
		switch sp.SockType {
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
			lastErr = &net.DNSError{Err: addrinfo.MsgService, Name: port}
		}
		return nil, lastErr
	}
	return func(sp addrinfo.SockProto) (uint16, bool) {
		switch sp.SockType {
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
		return nil, &net.DNSError{Err: addrinfo.MsgFamily, Name: host}
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
		return sdk.NameInfo{}, &net.DNSError{Err: addrinfo.MsgBadFlags, Name: fmt.Sprintf("%#x", flags)}
	}
	if !addr.IsValid() {
		return sdk.NameInfo{}, &net.DNSError{Err: addrinfo.MsgNoName, Name: addr.String(), IsNotFound: true}
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
			return "", &net.DNSError{Err: addrinfo.MsgNoName, Name: numeric, IsNotFound: true}
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
