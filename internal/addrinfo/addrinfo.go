// Package addrinfo holds getaddrinfo(3)'s rules for what needs no lookup:
// numeric hosts and ports, the hints' checks, the expansion into one result
// per socket type, family filtering and IPv4 mapping. The kernel answers
// numeric queries on the loop goroutine with it, and the bundled resolver
// back-ends build their answers with it, so every placement agrees on the
// rules. It imports only sdk.
package addrinfo

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"github.com/loopkernel/loopkernel/sdk"
)

// Messages of the C library's gai_strerror, used in the *net.DNSError
// values resolvers return so a Python user sees familiar text.
const (
	MsgNoName   = "Name or service not known"
	MsgFamily   = "Address family for hostname not supported"
	MsgSockType = "ai_socktype not supported"
	MsgService  = "Servname not supported for ai_socktype"
	MsgBadFlags = "Bad value for ai_flags"
)

// SockProto is one (socket type, protocol) pair a result is produced for.
type SockProto struct{ SockType, Proto int }

var (
	Stream = SockProto{syscall.SOCK_STREAM, syscall.IPPROTO_TCP}
	Dgram  = SockProto{syscall.SOCK_DGRAM, syscall.IPPROTO_UDP}
	Raw    = SockProto{syscall.SOCK_RAW, 0}
)

// SockProtos expands the hints into the socket types getaddrinfo(3) returns
// one result each for: all three when nothing is specified.
func SockProtos(h sdk.AddrinfoHints) ([]SockProto, error) {
	switch h.SockType {
	case 0:
		switch h.Protocol {
		case 0:
			return []SockProto{Stream, Dgram, Raw}, nil
		case syscall.IPPROTO_TCP:
			return []SockProto{Stream}, nil
		case syscall.IPPROTO_UDP:
			return []SockProto{Dgram}, nil
		}
		return []SockProto{{syscall.SOCK_RAW, h.Protocol}}, nil
	case syscall.SOCK_STREAM:
		if h.Protocol == 0 || h.Protocol == syscall.IPPROTO_TCP {
			return []SockProto{Stream}, nil
		}
	case syscall.SOCK_DGRAM:
		if h.Protocol == 0 || h.Protocol == syscall.IPPROTO_UDP {
			return []SockProto{Dgram}, nil
		}
	case syscall.SOCK_RAW:
		return []SockProto{{syscall.SOCK_RAW, h.Protocol}}, nil
	}
	return nil, &net.DNSError{Err: MsgSockType, Name: fmt.Sprintf("type %d proto %d", h.SockType, h.Protocol)}
}

// CheckHints rejects what getaddrinfo(3) rejects before any lookup.
func CheckHints(h sdk.AddrinfoHints) error {
	switch h.Family {
	case syscall.AF_UNSPEC, syscall.AF_INET, syscall.AF_INET6:
	default:
		return &net.DNSError{Err: "ai_family not supported", Name: strconv.Itoa(h.Family)}
	}
	const known = sdk.AIPassive | sdk.AICanonName | sdk.AINumericHost | sdk.AIV4Mapped |
		sdk.AIAll | sdk.AIAddrConfig | sdk.AINumericServ
	if h.Flags&^known != 0 {
		return &net.DNSError{Err: MsgBadFlags, Name: fmt.Sprintf("%#x", h.Flags)}
	}
	return nil
}

// NumericPort parses a port given as a number ("" is port 0). ok is false
// when port is a service name.
func NumericPort(port string) (p uint16, ok bool, err error) {
	if port == "" {
		return 0, true, nil
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err == nil {
		return uint16(n), true, nil
	}
	if port[0] >= '0' && port[0] <= '9' {
		// Digits that do not make a port: out of range or trailing junk.
		return 0, false, &net.DNSError{Err: MsgService, Name: port}
	}
	return 0, false, nil
}

// Numeric answers a query that needs no lookup: a numeric or empty host and
// a numeric or empty port. ok is false when host or port is a name; then
// the query must go to a Resolver. A numeric query that getaddrinfo(3)
// would fail (a family mismatch, bad hints) returns its error with ok true.
func Numeric(host, port string, hints sdk.AddrinfoHints) (ai []sdk.Addrinfo, ok bool, err error) {
	if err := CheckHints(hints); err != nil {
		return nil, true, err
	}
	var addrs []netip.Addr
	numHost := true
	if host == "" {
		addrs = EmptyHostAddrs(hints)
	} else if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if hints.Flags&sdk.AINumericHost != 0 {
		return nil, true, &net.DNSError{Err: MsgNoName, Name: host, IsNotFound: true}
	} else {
		numHost = false
	}
	p, numPort, err := NumericPort(port)
	if err != nil {
		return nil, true, err
	}
	if !numPort && hints.Flags&sdk.AINumericServ != 0 {
		return nil, true, &net.DNSError{Err: MsgNoName, Name: port, IsNotFound: true}
	}
	if !numHost || !numPort {
		return nil, false, nil
	}
	addrs, err = FilterFamily(host, addrs, hints)
	if err != nil {
		return nil, true, err
	}
	sps, err := SockProtos(hints)
	if err != nil {
		return nil, true, err
	}
	canon := ""
	if hints.Flags&sdk.AICanonName != 0 {
		canon = host
	}
	return Expand(addrs, sps, func(SockProto) (uint16, bool) { return p, true }, canon), true, nil
}

// EmptyHostAddrs is what an empty host means: wildcards for a passive
// (bind) query, loopback otherwise. IPv4 comes first, as with glibc's
// default gai.conf for these addresses.
func EmptyHostAddrs(h sdk.AddrinfoHints) []netip.Addr {
	if h.Flags&sdk.AIPassive != 0 {
		return []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	}
	return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
}

// FilterFamily keeps the addresses of the requested family, mapping IPv4
// into IPv6 when AIV4Mapped asks for it, and fails as getaddrinfo does when
// nothing of that family is left.
func FilterFamily(host string, addrs []netip.Addr, h sdk.AddrinfoHints) ([]netip.Addr, error) {
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
		return nil, &net.DNSError{Err: MsgFamily, Name: host}
	}
	return out, nil
}

// expand makes one result per address and socket type; portOf may drop a
// socket type for which the service has no port.
func Expand(addrs []netip.Addr, sps []SockProto, portOf func(SockProto) (uint16, bool), canon string) []sdk.Addrinfo {
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
				Family: fam, SockType: sp.SockType, Protocol: sp.Proto,
				Addr: netip.AddrPortFrom(a, p),
			})
		}
	}
	if len(out) > 0 {
		out[0].CanonName = canon
	}
	return out
}
