package kernel

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// Addresses in kernel form (sdk.SockAddr), as the I/O seam takes and
// delivers them, converted to and from the net.Addr values the API uses.

// rawAddr caches one address in kernel form, so sending to (or receiving
// from) the same peer again converts nothing and allocates nothing.
type rawAddr struct {
	sa   sdk.SockAddr
	addr net.Addr // immutable once handed out
	// what addr held when converted, to notice a caller mutating it
	ip   [16]byte
	ipN  int
	port int
	zone string
	name string
}

// fromRaw returns the net.Addr for a source address, reusing the previous
// one when the peer is the same.
func (c *rawAddr) fromRaw(sa *sdk.SockAddr, sotype int) net.Addr {
	if sa == nil || sa.Len == 0 {
		return nil
	}
	rb := unsafe.Slice((*byte)(unsafe.Pointer(&sa.Raw)), sa.Len)
	cb := unsafe.Slice((*byte)(unsafe.Pointer(&c.sa.Raw)), c.sa.Len)
	if c.addr != nil && sa.Len == c.sa.Len && bytes.Equal(rb, cb) {
		return c.addr
	}
	addr := rawToAddr(sa, sotype)
	if addr != nil {
		c.sa, c.addr = *sa, addr
	}
	return addr
}

// rawToAddr converts an address in kernel form to a *net.TCPAddr,
// *net.UDPAddr or *net.UnixAddr (by sotype), or nil when there is none (an
// unbound Unix sender).
func rawToAddr(sa *sdk.SockAddr, sotype int) net.Addr {
	if sa == nil || sa.Len == 0 {
		return nil
	}
	raw := &sa.Raw
	ip := func(b []byte, port uint16, zone string) net.Addr {
		ipc := net.IP(append([]byte(nil), b...))
		if sotype == unix.SOCK_STREAM {
			return &net.TCPAddr{IP: ipc, Port: int(port), Zone: zone}
		}
		return &net.UDPAddr{IP: ipc, Port: int(port), Zone: zone}
	}
	switch raw.Addr.Family {
	case unix.AF_INET:
		r := (*unix.RawSockaddrInet4)(unsafe.Pointer(raw))
		return ip(r.Addr[:], ntohs(r.Port), "")
	case unix.AF_INET6:
		r := (*unix.RawSockaddrInet6)(unsafe.Pointer(raw))
		zone := ""
		if r.Scope_id != 0 {
			zone = fmt.Sprint(r.Scope_id)
			if ifi, err := net.InterfaceByIndex(int(r.Scope_id)); err == nil {
				zone = ifi.Name
			}
		}
		return ip(r.Addr[:], ntohs(r.Port), zone)
	case unix.AF_UNIX:
		r := (*unix.RawSockaddrUnix)(unsafe.Pointer(raw))
		pathLen := int(sa.Len) - int(unsafe.Offsetof(r.Path))
		if pathLen <= 0 {
			return nil // an unbound sender: there is no address to answer
		}
		path := unsafe.Slice((*byte)(unsafe.Pointer(&r.Path[0])), pathLen)
		name := ""
		if path[0] == 0 {
			name = "@" + string(path[1:])
		} else {
			if i := bytes.IndexByte(path, 0); i >= 0 {
				path = path[:i]
			}
			name = string(path)
		}
		return &net.UnixAddr{Name: name, Net: netName(unix.AF_UNIX, sotype)}
	}
	return nil
}

func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return binary.BigEndian.Uint16(b[:])
}

func htons(p int) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], uint16(p))
	return *(*uint16)(unsafe.Pointer(&b[0]))
}

// toRaw converts a destination for a socket of family, reusing the last
// conversion when addr still holds the same address.
func (c *rawAddr) toRaw(family int, addr net.Addr) error {
	switch a := addr.(type) {
	case *net.UDPAddr:
		if c.addr == addr && a.Port == c.port && a.Zone == c.zone && bytes.Equal(a.IP, c.ip[:c.ipN]) {
			return nil
		}
		return c.convertIP(family, a.IP, a.Port, a.Zone, addr)
	case *net.UnixAddr:
		if c.addr == addr && a.Name == c.name {
			return nil
		}
	}
	sa, err := addrToSockaddr(family, addr)
	if err != nil {
		return err
	}
	return c.fromSockaddr(sa, addr)
}

func (c *rawAddr) convertIP(family int, ip net.IP, port int, zone string, addr net.Addr) error {
	sa, err := ipSockaddr(family, ip, port, zone)
	if err != nil {
		return err
	}
	if err := c.fromSockaddr(sa, addr); err != nil {
		return err
	}
	c.ipN = copy(c.ip[:], ip)
	c.port, c.zone = port, zone
	return nil
}

func (c *rawAddr) fromSockaddr(sa unix.Sockaddr, addr net.Addr) error {
	c.sa = sdk.SockAddr{}
	switch s := sa.(type) {
	case *unix.SockaddrInet4:
		r := (*unix.RawSockaddrInet4)(unsafe.Pointer(&c.sa.Raw))
		r.Family = unix.AF_INET
		r.Port = htons(s.Port)
		r.Addr = s.Addr
		c.sa.Len = unix.SizeofSockaddrInet4
	case *unix.SockaddrInet6:
		r := (*unix.RawSockaddrInet6)(unsafe.Pointer(&c.sa.Raw))
		r.Family = unix.AF_INET6
		r.Port = htons(s.Port)
		r.Addr = s.Addr
		r.Scope_id = s.ZoneId
		c.sa.Len = unix.SizeofSockaddrInet6
	case *unix.SockaddrUnix:
		r := (*unix.RawSockaddrUnix)(unsafe.Pointer(&c.sa.Raw))
		r.Family = unix.AF_UNIX
		name := s.Name
		if len(name) >= len(r.Path) {
			return fmt.Errorf("unix socket name too long: %w", unix.ENAMETOOLONG)
		}
		for i := 0; i < len(name); i++ {
			r.Path[i] = int8(name[i])
		}
		c.sa.Len = uint32(unsafe.Offsetof(r.Path)) + uint32(len(name))
		if len(name) > 0 && (name[0] == '@' || name[0] == 0) {
			r.Path[0] = 0 // abstract: the length, not a NUL, ends the name
		} else {
			c.sa.Len++ // count the terminating NUL of a path
		}
		c.name = name
	default:
		return fmt.Errorf("unsupported address %T: %w", sa, unix.EAFNOSUPPORT)
	}
	c.addr = addr
	return nil
}

// toSockAddr converts a destination for the seam (connect, sendto).
func toSockAddr(sa unix.Sockaddr) (sdk.SockAddr, error) {
	var c rawAddr
	err := c.fromSockaddr(sa, nil)
	return c.sa, err
}
