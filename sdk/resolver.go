package sdk

import (
	"context"
	"net/netip"
)

// The name-resolution seam: what a resolver back-end implements so the loop
// can answer getaddrinfo and getnameinfo. Like Selector, it is a plain Go
// interface over plain data (ints, strings, netip values), so the same
// implementation can run in-process or behind a wire: nothing in it is a
// pointer into the kernel or an open descriptor.
//
// The kernel calls a Resolver off the loop goroutine (on its executor), so a
// Resolver may block, and must be safe for concurrent use. Lookups of
// numeric hosts never reach it: the kernel answers those itself.

// Flags of AddrinfoHints.Flags, with the values of Linux's getaddrinfo(3)
// (they are not in golang.org/x/sys/unix, and a Python user passes these
// numbers).
const (
	// AIPassive: with an empty host, return wildcard addresses for bind
	// rather than loopback ones.
	AIPassive = 0x1
	// AICanonName: fill Addrinfo.CanonName of the first result.
	AICanonName = 0x2
	// AINumericHost: host must be a numeric address; no lookup is made.
	AINumericHost = 0x4
	// AIV4Mapped: with Family AF_INET6, return IPv4-mapped IPv6 addresses
	// when the host has no IPv6 address.
	AIV4Mapped = 0x8
	// AIAll: with AIV4Mapped, return mapped IPv4 addresses as well as IPv6
	// ones.
	AIAll = 0x10
	// AIAddrConfig: return a family only if the host has a non-loopback
	// address of that family configured.
	AIAddrConfig = 0x20
	// AINumericServ: port must be numeric; no service lookup is made.
	AINumericServ = 0x400
)

// Flags of Resolver.Getnameinfo, with Linux's getnameinfo(3) values.
const (
	// NINumericHost: return the numeric form of the address.
	NINumericHost = 0x1
	// NINumericServ: return the port number rather than a service name.
	NINumericServ = 0x2
	// NINoFQDN: return only the first label of a local host's name.
	NINoFQDN = 0x4
	// NINameReqd: fail if the address has no name, rather than returning
	// its numeric form.
	NINameReqd = 0x8
	// NIDgram: the service is datagram (UDP) rather than stream (TCP).
	NIDgram = 0x10
)

// AddrinfoHints narrows a Getaddrinfo query, as the hints argument of
// getaddrinfo(3) and the keyword arguments of asyncio's loop.getaddrinfo do.
// Zero values mean "any". Family is an address family (syscall.AF_INET,
// AF_INET6, or 0 for either); SockType a socket type (SOCK_STREAM,
// SOCK_DGRAM, SOCK_RAW or 0); Protocol an IP protocol number (IPPROTO_TCP,
// IPPROTO_UDP or 0); Flags a set of the AI constants above.
type AddrinfoHints struct {
	Family   int
	SockType int
	Protocol int
	Flags    int
}

// Addrinfo is one result of Getaddrinfo: the (family, type, proto,
// canonname, sockaddr) tuple of Python's socket.getaddrinfo. Addr carries
// an IPv6 scope as the address's zone.
type Addrinfo struct {
	Family    int
	SockType  int
	Protocol  int
	CanonName string
	Addr      netip.AddrPort
}

// NameInfo is the result of Getnameinfo: a host name (or numeric address)
// and a service name (or port number).
type NameInfo struct {
	Host    string
	Service string
}

// Resolver resolves names for the loop. Failures to find a name or a
// service are reported as *net.DNSError (a plain struct that crosses a wire
// intact), so callers can use errors.As the same way whichever placement
// answered; other failures wrap an error the caller can match with
// errors.Is.
type Resolver interface {
	// Getaddrinfo resolves host and port into addresses. host may be a name,
	// a numeric address or empty (AIPassive then selects wildcard addresses,
	// otherwise loopback ones); port a number, a service name, or empty
	// (port 0). Results come in the order a connecting client should try
	// them. Cancelling ctx abandons the lookup.
	Getaddrinfo(ctx context.Context, host, port string, hints AddrinfoHints) ([]Addrinfo, error)
	// Getnameinfo turns an address and port back into a host name and a
	// service name, as modified by flags (the NI constants).
	Getnameinfo(ctx context.Context, addr netip.AddrPort, flags int) (NameInfo, error)
}

// CachedResolver is a Resolver that can answer some lookups from memory at
// once. The kernel asks it on the loop goroutine before handing a lookup
// to its executor, so a lookup the back-end has cached costs no thread hop
// (asyncio's getaddrinfo always pays one). Only an in-process back-end can
// offer it: a plugin's cache is on the other side of a wire.
type CachedResolver interface {
	Resolver
	// GetaddrinfoCached answers as Getaddrinfo would, from memory only; ok
	// is false when an answer would need anything else (a query, a miss, a
	// negative answer, a file due to be looked at again). It is called on
	// the loop goroutine, so it must not block or do I/O.
	GetaddrinfoCached(host, port string, hints AddrinfoHints) (ai []Addrinfo, ok bool)
}

// DefaultResolver is the name of the resolver back-end a loop uses when it
// was given none: the one registered under it in Resolvers (plugins/resolver
// registers Go's resolver there).
const DefaultResolver = "go"
