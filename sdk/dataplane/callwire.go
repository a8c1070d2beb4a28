package dataplane

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/loopkernel/loopkernel/sdk"
)

// The call plane: the data plane of the families whose traffic is calls
// (resolver, executor) rather than readiness. WIRE.md §8 specifies it; the
// constants below are its numbers and change only together with that file
// and CallVersion.

// CallVersion is the call-plane protocol version carried in every header.
const CallVersion = 1

// callMagic is "LKCP" read as a little-endian uint32. It differs from the
// selector plane's magic so that a plugin serving the wrong family is told
// at its first frame, not after misreading one.
const callMagic = uint32('L') | uint32('K')<<8 | uint32('C')<<16 | uint32('P')<<24

const (
	callHeaderLen = 32
	contHeaderLen = 16
	// maxCallMessage bounds one message, however many frames it spans.
	// Larger arguments are issue 10's (shared memory or a passed file).
	maxCallMessage = 64 << 20
	maxCallName    = 64   // back-end name in HELLO_REPLY
	maxCallHost    = 1025 // NI_MAXHOST
	maxCallServ    = 256
	maxCallFunc    = 256
	maxCallZone    = 64
	maxCallText    = 64 << 10 // error text and DNS error fields
	addrinfoRecLen = 36
	maxCanonName   = 1024
)

// Message types. Host-to-plugin types are below 0x80.
const (
	ctHello     uint8 = 0x01
	ctCall      uint8 = 0x02
	ctCancel    uint8 = 0x03
	ctPing      uint8 = 0x04
	ctGoodbye   uint8 = 0x05
	ctCont      uint8 = 0x06 // continuation frame, either direction
	ctHelloRepl uint8 = 0x81
	ctResult    uint8 = 0x82
	ctPong      uint8 = 0x84
)

// Family is the kind of back-end a call plane serves, sent in HELLO.
type Family uint8

// The families served on the call plane.
const (
	FamilyResolver Family = 1
	FamilyExecutor Family = 2
)

func (f Family) String() string {
	switch f {
	case FamilyResolver:
		return "resolver"
	case FamilyExecutor:
		return "executor"
	}
	return fmt.Sprintf("family(%d)", uint8(f))
}

// Call kinds (operations).
const (
	kGetaddrinfo uint8 = 1
	kGetnameinfo uint8 = 2
	kFunc        uint8 = 3
)

// Result statuses.
const (
	stOK          uint8 = 0
	stFuncError   uint8 = 1 // the function failed: a = message
	stUnknownFunc uint8 = 2 // no such function: a = message
	stDNSError    uint8 = 3 // *net.DNSError: fixed flags; a = err, b = name, c = server
	stError       uint8 = 4 // anything else: fixed errno; a = message
)

// DNS error flags.
const (
	dnsTimeout   uint32 = 1 << 0
	dnsTemporary uint32 = 1 << 1
	dnsNotFound  uint32 = 1 << 2
)

// callMsg is one decoded message. Its slices alias the buffer it was
// decoded from.
type callMsg struct {
	typ, kind, status uint8
	id                uint64
	fixed             []byte
	a, b, c           []byte
}

// fixedLen is the size of the fixed part that follows the header, and
// whether the combination of type, kind and status exists at all.
func fixedLen(typ, kind, status uint8) (int, bool) {
	switch typ {
	case ctHello:
		return 0, (kind == uint8(FamilyResolver) || kind == uint8(FamilyExecutor)) && status == 0
	case ctCancel, ctPing, ctGoodbye, ctPong:
		return 0, kind == 0 && status == 0
	case ctHelloRepl:
		switch status {
		case stOK:
			return 0, kind == uint8(FamilyResolver) || kind == uint8(FamilyExecutor)
		case stError:
			return 4, kind == uint8(FamilyResolver) || kind == uint8(FamilyExecutor)
		}
		return 0, false
	case ctCall:
		switch kind {
		case kGetaddrinfo:
			return 16, status == 0
		case kGetnameinfo:
			return 24, status == 0
		case kFunc:
			return 0, status == 0
		}
		return 0, false
	case ctResult:
		switch status {
		case stOK:
			switch kind {
			case kGetaddrinfo:
				return 4, true
			case kGetnameinfo, kFunc:
				return 0, true
			}
		case stFuncError, stUnknownFunc:
			return 0, kind == kFunc
		case stDNSError:
			return 4, kind == kGetaddrinfo || kind == kGetnameinfo
		case stError:
			return 4, kind >= kGetaddrinfo && kind <= kFunc
		}
	}
	return 0, false
}

// fieldLimits are the most bytes fields a, b and c may hold in a message.
func fieldLimits(m *callMsg) (a, b, c int) {
	switch m.typ {
	case ctHelloRepl:
		if m.status == stOK {
			return maxCallName, 0, 0
		}
		return maxCallText, 0, 0
	case ctCall:
		switch m.kind {
		case kGetaddrinfo:
			return maxCallHost, maxCallServ, 0
		case kGetnameinfo:
			return maxCallZone, 0, 0
		case kFunc:
			return maxCallFunc, maxCallMessage, 0
		}
	case ctResult:
		switch m.status {
		case stOK:
			switch m.kind {
			case kGetaddrinfo:
				return maxCallMessage, 0, 0
			case kGetnameinfo:
				return maxCallHost, maxCallServ, 0
			case kFunc:
				return maxCallMessage, 0, 0
			}
		case stDNSError:
			return maxCallText, maxCallHost, maxCallText
		default:
			return maxCallText, 0, 0
		}
	}
	return 0, 0, 0
}

// messageLen reads a message's total length from its first frame's header,
// checking only what is needed to trust the number: magic, version and
// that it stays under maxCallMessage. decodeCallMsg checks the rest.
func messageLen(first []byte) (int, error) {
	if len(first) < callHeaderLen {
		return 0, fmt.Errorf("%w: call frame of %d bytes, shorter than a header", ErrProtocol, len(first))
	}
	if m := le.Uint32(first); m != callMagic {
		return 0, fmt.Errorf("%w: bad call-plane magic %#08x", ErrProtocol, m)
	}
	if v := first[4]; v != CallVersion {
		return 0, fmt.Errorf("%w: call-plane version %d, want %d", ErrProtocol, v, CallVersion)
	}
	fl, ok := fixedLen(first[5], first[6], first[7])
	if !ok {
		return 0, fmt.Errorf("%w: no message of type %#02x kind %d status %d", ErrProtocol, first[5], first[6], first[7])
	}
	total := uint64(callHeaderLen+fl) + uint64(le.Uint32(first[16:])) + uint64(le.Uint32(first[20:])) + uint64(le.Uint32(first[24:]))
	if total > maxCallMessage {
		return 0, fmt.Errorf("%w: message of %d bytes, over the %d limit", ErrProtocol, total, maxCallMessage)
	}
	return int(total), nil
}

// decodeCallMsg validates a whole (reassembled) message and splits it into
// its fields. It never panics on malformed input.
func decodeCallMsg(b []byte) (callMsg, error) {
	total, err := messageLen(b)
	if err != nil {
		return callMsg{}, err
	}
	if len(b) != total {
		return callMsg{}, fmt.Errorf("%w: message of %d bytes, header says %d", ErrProtocol, len(b), total)
	}
	if le.Uint32(b[28:]) != 0 {
		return callMsg{}, fmt.Errorf("%w: reserved header field set", ErrProtocol)
	}
	m := callMsg{typ: b[5], kind: b[6], status: b[7], id: le.Uint64(b[8:])}
	switch m.typ {
	case ctHello, ctGoodbye, ctHelloRepl:
		if m.id != 0 {
			return callMsg{}, fmt.Errorf("%w: message type %#02x with id %d, want 0", ErrProtocol, m.typ, m.id)
		}
	default:
		if m.id == 0 {
			return callMsg{}, fmt.Errorf("%w: message type %#02x with id 0", ErrProtocol, m.typ)
		}
	}
	fl, _ := fixedLen(m.typ, m.kind, m.status)
	la, lb, lc := int(le.Uint32(b[16:])), int(le.Uint32(b[20:])), int(le.Uint32(b[24:]))
	ma, mb, mc := fieldLimits(&m)
	if la > ma || lb > mb || lc > mc {
		return callMsg{}, fmt.Errorf("%w: field lengths %d/%d/%d over the limits %d/%d/%d for type %#02x kind %d status %d",
			ErrProtocol, la, lb, lc, ma, mb, mc, m.typ, m.kind, m.status)
	}
	p := b[callHeaderLen:]
	m.fixed, p = p[:fl], p[fl:]
	m.a, p = p[:la], p[la:]
	m.b, p = p[:lb], p[lb:]
	m.c = p[:lc]
	if m.typ == ctCall && m.kind == kGetnameinfo {
		if l := m.fixed[16]; (l != 4 && l != 16) || m.fixed[17] != 0 {
			return callMsg{}, fmt.Errorf("%w: getnameinfo address length %d", ErrProtocol, l)
		}
	}
	if m.typ == ctResult && m.kind == kGetaddrinfo && m.status == stOK {
		if _, err := decodeAddrinfos(m.a, le.Uint32(m.fixed)); err != nil {
			return callMsg{}, err
		}
	}
	return m, nil
}

// putCallHeader writes a header for a message whose fields have the given
// lengths.
func putCallHeader(b []byte, typ, kind, status uint8, id uint64, la, lb, lc int) {
	le.PutUint32(b[0:], callMagic)
	b[4], b[5], b[6], b[7] = CallVersion, typ, kind, status
	le.PutUint64(b[8:], id)
	le.PutUint32(b[16:], uint32(la))
	le.PutUint32(b[20:], uint32(lb))
	le.PutUint32(b[24:], uint32(lc))
	le.PutUint32(b[28:], 0)
}

// encodeCallMsg builds a whole message; the caller has checked the field
// limits (the receiver will).
func encodeCallMsg(typ, kind, status uint8, id uint64, fixed, a, b, c []byte) []byte {
	out := make([]byte, callHeaderLen+len(fixed)+len(a)+len(b)+len(c))
	putCallHeader(out, typ, kind, status, id, len(a), len(b), len(c))
	p := out[callHeaderLen:]
	p = p[copy(p, fixed):]
	p = p[copy(p, a):]
	p = p[copy(p, b):]
	copy(p, c)
	return out
}

// putAddr writes a as a 16-byte address field and returns its length byte
// (4 or 16) and its zone.
func putAddr(dst []byte, a netip.Addr) (uint8, string) {
	if a.Is4() {
		v := a.As4()
		clear(dst[:16])
		copy(dst, v[:])
		return 4, ""
	}
	v := a.As16()
	copy(dst, v[:])
	return 16, a.Zone()
}

func getAddr(src []byte, l uint8, zone string) netip.Addr {
	if l == 4 {
		return netip.AddrFrom4([4]byte(src[:4]))
	}
	a := netip.AddrFrom16([16]byte(src[:16]))
	if zone != "" {
		a = a.WithZone(zone)
	}
	return a
}

// encodeAddrinfos lays out getaddrinfo results as WIRE.md §8.4 says.
func encodeAddrinfos(ais []sdk.Addrinfo) ([]byte, error) {
	n := 0
	for _, ai := range ais {
		if len(ai.CanonName) > maxCanonName || len(ai.Addr.Addr().Zone()) > 255 {
			return nil, fmt.Errorf("dataplane: addrinfo with a canonical name or zone too long to encode")
		}
		n += addrinfoRecLen + len(ai.Addr.Addr().Zone()) + len(ai.CanonName)
	}
	out := make([]byte, n)
	p := out
	for _, ai := range ais {
		le.PutUint32(p[0:], uint32(int32(ai.Family)))
		le.PutUint32(p[4:], uint32(int32(ai.SockType)))
		le.PutUint32(p[8:], uint32(int32(ai.Protocol)))
		le.PutUint16(p[12:], ai.Addr.Port())
		l, zone := putAddr(p[20:36], ai.Addr.Addr())
		p[14], p[15] = l, uint8(len(zone))
		le.PutUint16(p[16:], uint16(len(ai.CanonName)))
		le.PutUint16(p[18:], 0)
		p = p[addrinfoRecLen:]
		p = p[copy(p, zone):]
		p = p[copy(p, ai.CanonName):]
	}
	return out, nil
}

// decodeAddrinfos parses count records that must fill b exactly.
func decodeAddrinfos(b []byte, count uint32) ([]sdk.Addrinfo, error) {
	if uint64(count)*addrinfoRecLen > uint64(len(b)) {
		return nil, fmt.Errorf("%w: %d addrinfo records cannot fit in %d bytes", ErrProtocol, count, len(b))
	}
	out := make([]sdk.Addrinfo, 0, count)
	for i := uint32(0); i < count; i++ {
		if len(b) < addrinfoRecLen {
			return nil, fmt.Errorf("%w: addrinfo record %d truncated", ErrProtocol, i)
		}
		l, zl, cl := b[14], int(b[15]), int(le.Uint16(b[16:]))
		if (l != 4 && l != 16) || le.Uint16(b[18:]) != 0 || (l == 4 && zl != 0) || cl > maxCanonName {
			return nil, fmt.Errorf("%w: addrinfo record %d malformed", ErrProtocol, i)
		}
		if len(b) < addrinfoRecLen+zl+cl {
			return nil, fmt.Errorf("%w: addrinfo record %d truncated", ErrProtocol, i)
		}
		zone := string(b[addrinfoRecLen : addrinfoRecLen+zl])
		out = append(out, sdk.Addrinfo{
			Family:    int(int32(le.Uint32(b[0:]))),
			SockType:  int(int32(le.Uint32(b[4:]))),
			Protocol:  int(int32(le.Uint32(b[8:]))),
			Addr:      netip.AddrPortFrom(getAddr(b[20:36], l, zone), le.Uint16(b[12:])),
			CanonName: string(b[addrinfoRecLen+zl : addrinfoRecLen+zl+cl]),
		})
		b = b[addrinfoRecLen+zl+cl:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last addrinfo record", ErrProtocol, len(b))
	}
	return out, nil
}

// dnsErrorFields splits a *net.DNSError into a result's fixed flags and
// fields, truncating text to the limits.
func dnsErrorFields(e *net.DNSError) (fixed, a, b, c []byte) {
	var flags uint32
	if e.IsTimeout {
		flags |= dnsTimeout
	}
	if e.IsTemporary {
		flags |= dnsTemporary
	}
	if e.IsNotFound {
		flags |= dnsNotFound
	}
	fixed = le.AppendUint32(nil, flags)
	return fixed, clip(e.Err, maxCallText), clip(e.Name, maxCallHost), clip(e.Server, maxCallText)
}

func clip(s string, n int) []byte {
	if len(s) > n {
		s = s[:n]
	}
	return []byte(s)
}
