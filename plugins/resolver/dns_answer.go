package resolver

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// answer is what the dns back-end keeps of a server's message for one
// question: the records of the asked type owned by the name the CNAME
// chain ends at, that name, and how long all of it may be kept. It is
// immutable once made, so the cache hands the same value to every reader.
type answer struct {
	addrs []netip.Addr // A or AAAA records
	names []string     // PTR targets, without the trailing dot
	canon string       // the owner of the records after CNAMEs, without the trailing dot
	ttl   uint32       // seconds; 0 means use once, do not keep
	// nxdomain: the name does not exist (RCODE 3); with no records and no
	// nxdomain, the name exists without records of this type (NODATA).
	nxdomain bool
	// negCacheable: a negative answer carried an SOA whose TTL bounds how
	// long it may be kept (RFC 2308 section 5); without one it is not kept.
	negCacheable bool
}

func (a *answer) negative() bool { return len(a.addrs) == 0 && len(a.names) == 0 }

// maxCNAMEChain bounds how many CNAMEs an answer may chain through, so a
// loop in a server's data cannot spin here.
const maxCNAMEChain = 16

// answerOf extracts the answer to (qname, qtype) from a checked message.
// Only records on the CNAME chain from qname count: records for other
// names in the answer section are ignored, so a server cannot plant an
// address for a name nobody asked about (the cache keys on the question).
func answerOf(m *dns.Msg, qname string, qtype uint16) *answer {
	a := &answer{ttl: ^uint32(0)}
	owner := strings.ToLower(qname)
	for range maxCNAMEChain {
		next := ""
		for _, rr := range m.Answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || !strings.EqualFold(h.Name, owner) {
				continue
			}
			if c, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME {
				next = strings.ToLower(c.Target)
				a.ttl = min(a.ttl, h.Ttl)
			}
		}
		if next == "" || next == owner {
			break
		}
		owner = next
	}
	for _, rr := range m.Answer {
		h := rr.Header()
		if h.Class != dns.ClassINET || !strings.EqualFold(h.Name, owner) || h.Rrtype != qtype {
			continue
		}
		switch r := rr.(type) {
		case *dns.A:
			if ip, ok := netip.AddrFromSlice(r.A.To4()); ok {
				a.addrs = append(a.addrs, ip)
				a.ttl = min(a.ttl, h.Ttl)
			}
		case *dns.AAAA:
			if ip, ok := netip.AddrFromSlice(r.AAAA.To16()); ok && len(r.AAAA) == 16 {
				a.addrs = append(a.addrs, ip)
				a.ttl = min(a.ttl, h.Ttl)
			}
		case *dns.PTR:
			a.names = append(a.names, strings.TrimSuffix(r.Ptr, "."))
			a.ttl = min(a.ttl, h.Ttl)
		}
	}
	a.canon = strings.TrimSuffix(owner, ".")
	if !a.negative() {
		return a
	}
	a.nxdomain = m.Rcode == dns.RcodeNameError
	for _, rr := range m.Ns {
		soa, ok := rr.(*dns.SOA)
		if !ok || !dns.IsSubDomain(strings.ToLower(soa.Hdr.Name), owner) {
			continue
		}
		// RFC 2308 section 5: the lesser of the SOA's own TTL and its
		// MINIMUM field.
		a.ttl, a.negCacheable = min(a.ttl, soa.Hdr.Ttl, soa.Minttl), true
		break
	}
	if !a.negCacheable {
		a.ttl = 0
	}
	return a
}
