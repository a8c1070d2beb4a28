package kernel

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrSocketClosed: an operation on a Socket that was closed (or detached).
var ErrSocketClosed = errors.New("socket is closed")

// ErrBlockingSocket: a socket in blocking mode was given to an operation
// that needs a non-blocking one (asyncio rejects these with ValueError,
// since a blocking call would freeze the loop).
var ErrBlockingSocket = errors.New("socket must be non-blocking")

// Socket is a socket descriptor the kernel owns: the Go counterpart of
// Python's socket.socket as asyncio's loop methods take and return it.
//
// Every socket the kernel makes is close-on-exec and non-blocking, because
// the loop polls it for readiness and must never block in a system call on
// it. The family, type and blocking mode are cached at construction so that
// the checks asyncio's sock_* methods make on every call cost no system
// call.
//
// A Socket is not safe for concurrent use, except that Close may race with
// nothing but itself (it is idempotent). Code running on the loop reads the
// descriptor with Fd; code elsewhere that needs the descriptor (for a
// setsockopt, say) uses SyscallConn, which is what ErrorContext.Socket
// reports.
type Socket struct {
	fd       *fdCell
	family   int
	sotype   int
	proto    int
	blocking bool
}

// NewSocket creates a non-blocking, close-on-exec socket (socket(2)); proto
// 0 picks the default protocol of family and sotype.
func NewSocket(family, sotype, proto int) (*Socket, error) {
	fd, err := unix.Socket(family, sotype|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("socket(%s, %s, %d): %w", familyName(family), typeName(sotype), proto, err)
	}
	return newSocket(fd, family, sotype, proto), nil
}

// fdCell holds a Socket's descriptor apart from the Socket, so that the
// cleanup that closes a forgotten descriptor does not keep the Socket alive.
type fdCell struct{ atomic.Int64 } // -1 once closed or detached

func newSocket(fd, family, sotype, proto int) *Socket {
	c := &fdCell{}
	c.Store(int64(fd))
	s := &Socket{fd: c, family: family, sotype: sotype, proto: proto}
	// A Socket dropped without Close (say, its loop was closed while a
	// transport still had ConnectionLost pending) must not leak its
	// descriptor; like os.File, the collector closes it.
	runtime.AddCleanup(s, closeCell, c)
	return s
}

func closeCell(c *fdCell) {
	if fd := c.Swap(-1); fd >= 0 {
		unix.Close(int(fd))
	}
}

// SocketFromFD adopts fd, which must be a socket: the Socket owns it from
// now on and closes it in Close. It is switched to non-blocking and
// close-on-exec mode; family, type and protocol are read from the kernel.
// To keep a descriptor of your own, pass a dup of it.
func SocketFromFD(fd int) (*Socket, error) {
	if fd < 0 {
		return nil, fmt.Errorf("socket from fd %d: %w", fd, ErrInvalidFD)
	}
	family, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return nil, fmt.Errorf("socket from fd %d: SO_DOMAIN: %w", fd, err)
	}
	sotype, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nil, fmt.Errorf("socket from fd %d: SO_TYPE: %w", fd, err)
	}
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("socket from fd %d: SO_PROTOCOL: %w", fd, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("socket from fd %d: set non-blocking: %w", fd, err)
	}
	unix.CloseOnExec(fd)
	return newSocket(fd, family, sotype, proto), nil
}

// Fd returns the descriptor, or -1 once the socket is closed or detached.
// The descriptor stays the Socket's: do not close it.
func (s *Socket) Fd() int { return int(s.fd.Load()) }

// Family is the address family (unix.AF_INET, AF_INET6, AF_UNIX).
func (s *Socket) Family() int { return s.family }

// Type is the socket type (unix.SOCK_STREAM, SOCK_DGRAM).
func (s *Socket) Type() int { return s.sotype }

// Proto is the protocol number the socket was created with (0 for the
// default).
func (s *Socket) Proto() int { return s.proto }

// Close closes the descriptor. Closing twice returns nil; a transport that
// owns the socket closes it itself, after unregistering it from the loop.
func (s *Socket) Close() error {
	fd := s.fd.Swap(-1)
	if fd < 0 {
		return nil
	}
	if err := unix.Close(int(fd)); err != nil {
		return fmt.Errorf("close socket fd %d: %w", fd, err)
	}
	return nil
}

// Detach gives up ownership: it returns the descriptor, which the caller
// must close, and leaves the Socket closed (socket.detach).
func (s *Socket) Detach() int { return int(s.fd.Swap(-1)) }

// Blocking reports the cached blocking mode; sockets the kernel creates
// start non-blocking.
func (s *Socket) Blocking() bool { return s.blocking }

// SetBlocking switches the descriptor between blocking and non-blocking
// mode. Loop operations refuse a blocking socket with ErrBlockingSocket.
func (s *Socket) SetBlocking(on bool) error {
	fd, err := s.sysfd("set blocking")
	if err != nil {
		return err
	}
	if err := unix.SetNonblock(fd, !on); err != nil {
		return fmt.Errorf("set blocking=%v on fd %d: %w", on, fd, err)
	}
	s.blocking = on
	return nil
}

func (s *Socket) sysfd(op string) (int, error) {
	fd := int(s.fd.Load())
	if fd < 0 {
		return -1, fmt.Errorf("%s: %w", op, ErrSocketClosed)
	}
	return fd, nil
}

// LocalAddr returns the bound address (getsockname) as a *net.TCPAddr,
// *net.UDPAddr or *net.UnixAddr, or nil if it cannot be read.
func (s *Socket) LocalAddr() net.Addr {
	fd := s.Fd()
	if fd < 0 {
		return nil
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil
	}
	return sockaddrToAddr(sa, s.sotype)
}

// RemoteAddr returns the peer address (getpeername), or nil when the socket
// is not connected.
func (s *Socket) RemoteAddr() net.Addr {
	fd := s.Fd()
	if fd < 0 {
		return nil
	}
	sa, err := unix.Getpeername(fd)
	if err != nil {
		return nil
	}
	return sockaddrToAddr(sa, s.sotype)
}

// Bind binds the socket to addr (a *net.TCPAddr, *net.UDPAddr,
// *net.UnixAddr or *net.IPAddr).
func (s *Socket) Bind(addr net.Addr) error {
	fd, err := s.sysfd("bind")
	if err != nil {
		return err
	}
	sa, err := addrToSockaddr(s.family, addr)
	if err != nil {
		return fmt.Errorf("bind %v: %w", addr, err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return &net.OpError{Op: "bind", Net: netName(s.family, s.sotype), Addr: addr, Err: osErr("bind", err)}
	}
	return nil
}

// Listen marks the socket as accepting connections; backlog <= 0 picks
// asyncio's default of 100.
func (s *Socket) Listen(backlog int) error {
	fd, err := s.sysfd("listen")
	if err != nil {
		return err
	}
	if backlog <= 0 {
		backlog = defaultBacklog
	}
	if err := unix.Listen(fd, backlog); err != nil {
		return &net.OpError{Op: "listen", Net: netName(s.family, s.sotype), Addr: s.LocalAddr(), Err: osErr("listen", err)}
	}
	return nil
}

// SetsockoptInt sets an integer socket option (setsockopt(2)).
func (s *Socket) SetsockoptInt(level, opt, value int) error {
	fd, err := s.sysfd("setsockopt")
	if err != nil {
		return err
	}
	if err := unix.SetsockoptInt(fd, level, opt, value); err != nil {
		return fmt.Errorf("setsockopt(%d, %d, %d) on fd %d: %w", level, opt, value, fd, err)
	}
	return nil
}

// GetsockoptInt reads an integer socket option (getsockopt(2)).
func (s *Socket) GetsockoptInt(level, opt int) (int, error) {
	fd, err := s.sysfd("getsockopt")
	if err != nil {
		return 0, err
	}
	v, err := unix.GetsockoptInt(fd, level, opt)
	if err != nil {
		return 0, fmt.Errorf("getsockopt(%d, %d) on fd %d: %w", level, opt, fd, err)
	}
	return v, nil
}

func (s *Socket) String() string {
	return fmt.Sprintf("<Socket fd=%d family=%s type=%s laddr=%v raddr=%v>",
		s.Fd(), familyName(s.family), typeName(s.sotype), s.LocalAddr(), s.RemoteAddr())
}

// connectNB connects a datagram socket, which never waits (stream
// connects go through the I/O driver's connect operation).
func (s *Socket) connectNB(sa unix.Sockaddr) error {
	fd, err := s.sysfd("connect")
	if err != nil {
		return err
	}
	for {
		err = unix.Connect(fd, sa)
		if err != unix.EINTR {
			return err
		}
	}
}

// SyscallConn gives access to the descriptor for options the Socket does
// not wrap (syscall.Conn); it lets a *Socket stand in ErrorContext.Socket.
// Read and Write wait for readiness with poll(2) on the calling goroutine,
// so use them off the loop only.
func (s *Socket) SyscallConn() (syscall.RawConn, error) { return rawConn{s}, nil }

type rawConn struct{ s *Socket }

func (c rawConn) Control(f func(fd uintptr)) error {
	fd, err := c.s.sysfd("control")
	if err != nil {
		return err
	}
	f(uintptr(fd))
	runtime.KeepAlive(c.s) // the collector must not close fd while f uses it
	return nil
}

func (c rawConn) Read(f func(fd uintptr) bool) error  { return c.wait(unix.POLLIN, f) }
func (c rawConn) Write(f func(fd uintptr) bool) error { return c.wait(unix.POLLOUT, f) }

func (c rawConn) wait(ev int16, f func(fd uintptr) bool) error {
	for {
		fd, err := c.s.sysfd("raw conn")
		if err != nil {
			return err
		}
		done := f(uintptr(fd))
		runtime.KeepAlive(c.s)
		if done {
			return nil
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: ev}}
		if _, err := unix.Poll(pfd, -1); err != nil && err != unix.EINTR {
			return fmt.Errorf("raw conn poll fd %d: %w", fd, err)
		}
		runtime.KeepAlive(c.s)
	}
}

// ---- address conversions ----

// sockaddrToAddr converts a kernel socket address to the net.Addr a Go
// user expects for the socket type: TCP for stream IP sockets, UDP for
// datagram ones, Unix otherwise. IPv4-mapped IPv6 addresses stay IPv6
// (like Python, which reports '::ffff:127.0.0.1').
func sockaddrToAddr(sa unix.Sockaddr, sotype int) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		ip := net.IP(append([]byte(nil), a.Addr[:]...))
		if sotype == unix.SOCK_DGRAM {
			return &net.UDPAddr{IP: ip, Port: a.Port}
		}
		return &net.TCPAddr{IP: ip, Port: a.Port}
	case *unix.SockaddrInet6:
		ip := net.IP(append([]byte(nil), a.Addr[:]...))
		zone := ""
		if a.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(a.ZoneId)); err == nil {
				zone = ifi.Name
			} else {
				zone = fmt.Sprint(a.ZoneId)
			}
		}
		if sotype == unix.SOCK_DGRAM {
			return &net.UDPAddr{IP: ip, Port: a.Port, Zone: zone}
		}
		return &net.TCPAddr{IP: ip, Port: a.Port, Zone: zone}
	case *unix.SockaddrUnix:
		name := a.Name
		if name == "@" { // x/sys renders an unnamed socket's empty path as "@"
			name = ""
		}
		n := "unix"
		switch sotype {
		case unix.SOCK_DGRAM:
			n = "unixgram"
		case unix.SOCK_SEQPACKET:
			n = "unixpacket"
		}
		return &net.UnixAddr{Name: name, Net: n}
	}
	return nil
}

// addrToSockaddr converts addr for a socket of the given family (0: pick
// the family from the address). An IPv4 address for an AF_INET6 socket
// becomes its IPv4-mapped form, so dual-stack sockets can reach IPv4 peers.
// Unix names starting with "@" or NUL are abstract.
func addrToSockaddr(family int, addr net.Addr) (unix.Sockaddr, error) {
	var ip net.IP
	var port int
	var zone string
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, port, zone = a.IP, a.Port, a.Zone
	case *net.UDPAddr:
		ip, port, zone = a.IP, a.Port, a.Zone
	case *net.IPAddr:
		ip, zone = a.IP, a.Zone
	case *net.UnixAddr:
		if family != 0 && family != unix.AF_UNIX {
			return nil, fmt.Errorf("unix address for a %s socket: %w", familyName(family), unix.EAFNOSUPPORT)
		}
		if len(a.Name) >= len(unix.RawSockaddrUnix{}.Path) {
			return nil, fmt.Errorf("unix socket name of %d bytes is too long: %w", len(a.Name), unix.ENAMETOOLONG)
		}
		return &unix.SockaddrUnix{Name: a.Name}, nil
	case nil:
		return nil, fmt.Errorf("nil address: %w", unix.EINVAL)
	default:
		return nil, fmt.Errorf("unsupported address type %T: %w", addr, unix.EAFNOSUPPORT)
	}
	return ipSockaddr(family, ip, port, zone)
}

func ipSockaddr(family int, ip net.IP, port int, zone string) (unix.Sockaddr, error) {
	if port < 0 || port > 0xffff {
		return nil, fmt.Errorf("port %d out of range: %w", port, unix.EINVAL)
	}
	if family == 0 {
		family = unix.AF_INET6
		if ip == nil || ip.To4() != nil {
			family = unix.AF_INET
		}
	}
	switch family {
	case unix.AF_INET:
		sa := &unix.SockaddrInet4{Port: port}
		if ip != nil {
			ip4 := ip.To4()
			if ip4 == nil {
				return nil, fmt.Errorf("IPv6 address %v for an AF_INET socket: %w", ip, unix.EAFNOSUPPORT)
			}
			copy(sa.Addr[:], ip4)
		}
		return sa, nil
	case unix.AF_INET6:
		sa := &unix.SockaddrInet6{Port: port}
		if ip != nil {
			ip16 := ip.To16()
			if ip16 == nil {
				return nil, fmt.Errorf("invalid IP %v: %w", ip, unix.EINVAL)
			}
			copy(sa.Addr[:], ip16) // To16 maps IPv4 into ::ffff:a.b.c.d
		}
		if zone != "" {
			if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
				sa.ZoneId = uint32(n)
			} else if ifi, err := net.InterfaceByName(zone); err == nil {
				sa.ZoneId = uint32(ifi.Index)
			} else {
				return nil, fmt.Errorf("unknown IPv6 zone %q: %w", zone, unix.EINVAL)
			}
		}
		return sa, nil
	}
	return nil, fmt.Errorf("IP address for a %s socket: %w", familyName(family), unix.EAFNOSUPPORT)
}

// addrFamily is the family a socket needs to use addr directly.
func addrFamily(addr net.Addr) int {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return ipFamily(a.IP)
	case *net.UDPAddr:
		return ipFamily(a.IP)
	case *net.IPAddr:
		return ipFamily(a.IP)
	case *net.UnixAddr:
		return unix.AF_UNIX
	}
	return unix.AF_UNSPEC
}

func ipFamily(ip net.IP) int {
	if ip == nil || ip.To4() != nil {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func familyName(f int) string {
	switch f {
	case unix.AF_INET:
		return "AF_INET"
	case unix.AF_INET6:
		return "AF_INET6"
	case unix.AF_UNIX:
		return "AF_UNIX"
	case unix.AF_UNSPEC:
		return "AF_UNSPEC"
	}
	return fmt.Sprintf("family(%d)", f)
}

func typeName(t int) string {
	switch t {
	case unix.SOCK_STREAM:
		return "SOCK_STREAM"
	case unix.SOCK_DGRAM:
		return "SOCK_DGRAM"
	case unix.SOCK_SEQPACKET:
		return "SOCK_SEQPACKET"
	}
	return fmt.Sprintf("type(%d)", t)
}

// netName is the Go network name ("tcp6", "unixgram", ...) for errors.
func netName(family, sotype int) string {
	switch family {
	case unix.AF_UNIX:
		switch sotype {
		case unix.SOCK_DGRAM:
			return "unixgram"
		case unix.SOCK_SEQPACKET:
			return "unixpacket"
		}
		return "unix"
	case unix.AF_INET, unix.AF_INET6:
		n := "tcp"
		if sotype == unix.SOCK_DGRAM {
			n = "udp"
		}
		if family == unix.AF_INET6 {
			return n + "6"
		}
		return n + "4"
	}
	return "ip"
}

// osErr wraps a system call error as os.SyscallError, keeping
// errors.Is(err, unix.EXXX) working.
func osErr(call string, err error) error {
	if _, ok := err.(syscall.Errno); ok {
		return os.NewSyscallError(call, err)
	}
	return err
}

// defaultBacklog is asyncio's listen backlog.
const defaultBacklog = 100
