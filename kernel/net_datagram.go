package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// DatagramOptions are the keyword arguments of asyncio's
// create_datagram_endpoint. Addresses are "host:port" strings resolved
// through the loop's resolver, or, with Family unix.AF_UNIX, socket paths
// ("@name" for an abstract one).
type DatagramOptions struct {
	// LocalAddr is bound before use (asyncio: local_addr). A stale Unix
	// socket file at a local path is removed first, as asyncio does.
	LocalAddr string
	// RemoteAddr connects the socket (asyncio: remote_addr): SendTo may
	// then omit the address, and only that peer's datagrams arrive.
	RemoteAddr string
	// Family, Proto and Flags are passed to getaddrinfo; Family is required
	// when neither address is given.
	Family, Proto, Flags int
	// ReusePort sets SO_REUSEPORT.
	ReusePort bool
	// AllowBroadcast sets SO_BROADCAST.
	AllowBroadcast bool
	// Sock is an existing datagram socket to use; the other fields must
	// then be empty. The transport takes ownership.
	Sock *Socket
}

// CreateDatagramEndpoint creates a UDP (or Unix datagram) endpoint and
// couples it with a protocol made by factory (asyncio: transport, protocol
// = await loop.create_datagram_endpoint(...)). When it returns, the
// protocol's ConnectionMade has run.
func CreateDatagramEndpoint[P DatagramProtocol](co *Co, factory func() P, opts *DatagramOptions) (DatagramTransport, P, error) {
	var zero P
	var o DatagramOptions
	if opts != nil {
		o = *opts
	}
	if factory == nil {
		return nil, zero, fmt.Errorf("create datagram endpoint: nil protocol factory: %w", ErrInvalidArgument)
	}
	var sock *Socket
	var remote net.Addr
	switch {
	case o.Sock != nil:
		if o.LocalAddr != "" || o.RemoteAddr != "" || o.Family != 0 || o.Proto != 0 || o.Flags != 0 || o.ReusePort || o.AllowBroadcast {
			return nil, zero, fmt.Errorf("create datagram endpoint: socket modifier options cannot be combined with Sock: %w", ErrInvalidArgument)
		}
		if o.Sock.Type() != unix.SOCK_DGRAM {
			return nil, zero, fmt.Errorf("create datagram endpoint: a datagram socket is required, got %s: %w", typeName(o.Sock.Type()), ErrInvalidArgument)
		}
		sock = o.Sock
		remote = sock.RemoteAddr()
	case o.Family == unix.AF_UNIX:
		var err error
		sock, remote, err = unixDatagramSocket(&o)
		if err != nil {
			return nil, zero, fmt.Errorf("create datagram endpoint: %w", err)
		}
	case o.LocalAddr == "" && o.RemoteAddr == "":
		if o.Family == 0 {
			return nil, zero, fmt.Errorf("create datagram endpoint: Family is required without addresses: %w", ErrInvalidArgument)
		}
		s, err := NewSocket(o.Family, unix.SOCK_DGRAM, o.Proto)
		if err != nil {
			return nil, zero, fmt.Errorf("create datagram endpoint: %w", err)
		}
		if err := datagramOptions(s, &o); err != nil {
			s.Close()
			return nil, zero, fmt.Errorf("create datagram endpoint: %w", err)
		}
		sock = s
	default:
		var err error
		sock, remote, err = inetDatagramSocket(co, &o)
		if err != nil {
			return nil, zero, fmt.Errorf("create datagram endpoint: %w", err)
		}
	}
	p, err := callGuarded(func() (P, error) { return factory(), nil })
	if err != nil {
		sock.Close()
		return nil, zero, fmt.Errorf("create datagram endpoint: protocol factory: %w", err)
	}
	l := co.Loop()
	waiter := CreateFuture[struct{}](l)
	t, err := newDatagramTransport(l, sock, p, remote, waiter)
	if err != nil {
		sock.Close()
		return nil, zero, fmt.Errorf("create datagram endpoint: %w", err)
	}
	if _, err := waiter.Await(co); err != nil {
		t.Abort()
		return nil, zero, err
	}
	return t, p, nil
}

func datagramOptions(s *Socket, o *DatagramOptions) error {
	if o.ReusePort {
		if err := s.SetsockoptInt(unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return err
		}
	}
	if o.AllowBroadcast {
		if err := s.SetsockoptInt(unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err != nil {
			return err
		}
	}
	return nil
}

func unixDatagramSocket(o *DatagramOptions) (*Socket, net.Addr, error) {
	s, err := NewSocket(unix.AF_UNIX, unix.SOCK_DGRAM, o.Proto)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*Socket, net.Addr, error) { s.Close(); return nil, nil, err }
	if err := datagramOptions(s, o); err != nil {
		return fail(err)
	}
	if p := o.LocalAddr; p != "" {
		if p[0] != '@' && p[0] != 0 {
			if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
				os.Remove(p)
			}
		}
		if err := s.Bind(&net.UnixAddr{Name: p, Net: "unixgram"}); err != nil {
			return fail(err)
		}
	}
	var remote net.Addr
	if p := o.RemoteAddr; p != "" {
		remote = &net.UnixAddr{Name: p, Net: "unixgram"}
		if err := connectDatagram(s, remote); err != nil {
			return fail(err)
		}
	}
	return s, remote, nil
}

// connectDatagram connects a datagram socket, which never blocks.
func connectDatagram(s *Socket, addr net.Addr) error {
	sa, err := addrToSockaddr(s.Family(), addr)
	if err != nil {
		return err
	}
	if err := s.connectNB(sa); err != nil {
		return &net.OpError{Op: "connect", Net: netName(s.Family(), unix.SOCK_DGRAM), Addr: addr, Err: os.NewSyscallError("connect", err)}
	}
	return nil
}

// inetDatagramSocket resolves the addresses and tries each family that has
// both (when both are given) until one socket binds and connects.
func inetDatagramSocket(co *Co, o *DatagramOptions) (*Socket, net.Addr, error) {
	hints := sdk.AddrinfoHints{Family: o.Family, SockType: unix.SOCK_DGRAM, Protocol: o.Proto, Flags: o.Flags}
	lookup := func(addr string, passive bool) ([]dialTarget, error) {
		if addr == "" {
			return nil, nil
		}
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("address %q: %v: %w", addr, err, ErrInvalidArgument)
		}
		hh := hints
		if passive {
			hh.Flags |= sdk.AIPassive
		}
		ais, err := resolve(co, h, p, hh)
		if err != nil {
			return nil, err
		}
		out := make([]dialTarget, 0, len(ais))
		for _, ai := range ais {
			sa, err := addrPortToSockaddr(ai.Family, ai)
			if err != nil {
				return nil, err
			}
			out = append(out, dialTarget{family: ai.Family, proto: ai.Protocol, sa: sa, addr: sockaddrToAddr(sa, unix.SOCK_DGRAM)})
		}
		return out, nil
	}
	locals, err := lookup(o.LocalAddr, true)
	if err != nil {
		return nil, nil, err
	}
	remotes, err := lookup(o.RemoteAddr, false)
	if err != nil {
		return nil, nil, err
	}
	// Pair addresses by family, in the resolver's order.
	type pair struct {
		family        int
		local, remote *dialTarget
	}
	var pairs []pair
	switch {
	case locals == nil:
		for i := range remotes {
			pairs = append(pairs, pair{remotes[i].family, nil, &remotes[i]})
		}
	case remotes == nil:
		for i := range locals {
			pairs = append(pairs, pair{locals[i].family, &locals[i], nil})
		}
	default:
		for i := range locals {
			for j := range remotes {
				if locals[i].family == remotes[j].family {
					pairs = append(pairs, pair{locals[i].family, &locals[i], &remotes[j]})
				}
			}
		}
		if len(pairs) == 0 {
			return nil, nil, fmt.Errorf("local %q and remote %q have no address family in common: %w", o.LocalAddr, o.RemoteAddr, ErrInvalidArgument)
		}
	}
	var errs []error
	for _, pr := range pairs {
		proto := o.Proto
		s, err := NewSocket(pr.family, unix.SOCK_DGRAM, proto)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = datagramOptions(s, o)
		if err == nil && pr.local != nil {
			err = bindSockaddr(s, pr.local.sa)
		}
		if err == nil && pr.remote != nil {
			if cerr := s.connectNB(pr.remote.sa); cerr != nil {
				err = &net.OpError{Op: "connect", Net: netName(pr.family, unix.SOCK_DGRAM), Addr: pr.remote.addr, Err: os.NewSyscallError("connect", cerr)}
			}
		}
		if err != nil {
			s.Close()
			errs = append(errs, err)
			continue
		}
		var remote net.Addr
		if pr.remote != nil {
			remote = pr.remote.addr
		}
		return s, remote, nil
	}
	return nil, nil, errors.Join(errs...)
}

// datagramOverhead is what each queued datagram adds to the write buffer
// size besides its payload (a UDP header, as asyncio counts it), so that
// queued empty datagrams still reach the high water mark.
const datagramOverhead = 8

// pendingDatagram is a datagram the socket refused for now (EAGAIN), with
// its destination already converted.
type pendingDatagram struct {
	data    []byte
	raw     unix.RawSockaddrAny
	rawLen  uint32
	hasAddr bool
}

// rawAddr caches one address in kernel form, so sending to (or receiving
// from) the same peer again converts nothing and allocates nothing.
type rawAddr struct {
	raw  unix.RawSockaddrAny
	len  uint32
	addr net.Addr // immutable once handed out
	// what addr held when converted, to notice a caller mutating it
	ip   [16]byte
	ipN  int
	port int
	zone string
	name string
}

// datagramTransport is the DatagramTransport of UDP and Unix datagram
// sockets.
type datagramTransport struct {
	transportCore
	dp DatagramProtocol

	address net.Addr // the connected peer, or nil

	queue []pendingDatagram
	size  int

	send    rawAddr // last destination converted
	recv    rawAddr // last source seen
	recvRaw unix.RawSockaddrAny
}

func newDatagramTransport(l *Loop, sock *Socket, p BaseProtocol, address net.Addr, waiter *Future[struct{}]) (*datagramTransport, error) {
	if _, ok := p.(DatagramProtocol); !ok {
		return nil, fmt.Errorf("protocol %T is not a DatagramProtocol: %w", p, ErrInvalidArgument)
	}
	fd, err := transportFD(sock, "datagram transport")
	if err != nil {
		return nil, err
	}
	t := &datagramTransport{address: address}
	t.init(t, l, sock, fd, sock.RemoteAddr(), t.readReady, t.writeReady)
	t.setProtocol(p)
	if _, err := l.CallSoon(func() { t.start(waiter) }); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *datagramTransport) setProtocol(p BaseProtocol) {
	t.proto = p
	t.dp, _ = p.(DatagramProtocol)
	t.flow, _ = p.(WriteFlowControl)
}

func (t *datagramTransport) start(waiter *Future[struct{}]) {
	ok := t.callProtocol("ConnectionMade", func() { t.proto.ConnectionMade(t) })
	if ok && !t.closing {
		if err := t.loop.watchFD(t.fd, sdk.Read, &t.rh); err != nil {
			t.forceClose(err)
			ok = false
		} else {
			t.reading = true
		}
	}
	t.finishStart(waiter, ok)
}

// receivePanicked reports a panic from DatagramReceived or ErrorReceived
// and keeps the endpoint open: as in asyncio, where an exception from these
// reaches the exception handler but does not close the endpoint, one bad
// datagram must not cut off every other peer of a server.
func (t *datagramTransport) receivePanicked(name string, r any) {
	t.reportPanic("Exception in protocol "+name, r)
}

// errorReceived hands a send or receive error to the protocol; the
// endpoint stays open.
func (t *datagramTransport) errorReceived(err error) {
	if t.dp == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			t.receivePanicked("ErrorReceived", r)
		}
	}()
	t.dp.ErrorReceived(err)
}

// readReady receives one datagram into the loop's shared buffer.
func (t *datagramTransport) readReady() {
	if t.connLost {
		return
	}
	if t.dp == nil {
		t.protocolPanicked("DatagramReceived", fmt.Sprintf("protocol %T is not a DatagramProtocol", t.proto))
		return
	}
	buf := t.loop.recvBuf()
	n, rawLen, err := recvFrom(t.fd, buf, &t.recvRaw)
	if err != nil {
		if isWouldBlock(err) {
			return
		}
		// ICMP errors (ECONNREFUSED after sending to a closed port on a
		// connected socket) are reported and the endpoint goes on.
		t.errorReceived(t.opError("read", t.address, err))
		return
	}
	addr := t.recv.fromRaw(&t.recvRaw, rawLen, t.sock.Type())
	defer func() {
		if r := recover(); r != nil {
			t.receivePanicked("DatagramReceived", r)
		}
	}()
	t.dp.DatagramReceived(buf[:n], addr)
}

func recvFrom(fd int, b []byte, raw *unix.RawSockaddrAny) (int, uint32, error) {
	for {
		rawLen := uint32(unix.SizeofSockaddrAny)
		n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(raw)), uintptr(unsafe.Pointer(&rawLen)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, 0, e
		}
		return int(n), rawLen, nil
	}
}

func sendTo(fd int, b []byte, raw *unix.RawSockaddrAny, rawLen uint32) error {
	var p, n uintptr
	if raw != nil {
		p, n = uintptr(unsafe.Pointer(raw)), uintptr(rawLen)
	}
	for {
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
			unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, p, n)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// fromRaw returns the net.Addr for a source address, reusing the previous
// one when the peer is the same.
func (c *rawAddr) fromRaw(raw *unix.RawSockaddrAny, n uint32, sotype int) net.Addr {
	if n == 0 {
		return nil
	}
	rb := unsafe.Slice((*byte)(unsafe.Pointer(raw)), n)
	cb := unsafe.Slice((*byte)(unsafe.Pointer(&c.raw)), c.len)
	if c.addr != nil && n == c.len && bytes.Equal(rb, cb) {
		return c.addr
	}
	var addr net.Addr
	switch raw.Addr.Family {
	case unix.AF_INET:
		r := (*unix.RawSockaddrInet4)(unsafe.Pointer(raw))
		addr = &net.UDPAddr{IP: net.IP(append([]byte(nil), r.Addr[:]...)), Port: int(ntohs(r.Port))}
	case unix.AF_INET6:
		r := (*unix.RawSockaddrInet6)(unsafe.Pointer(raw))
		zone := ""
		if r.Scope_id != 0 {
			zone = fmt.Sprint(r.Scope_id)
			if ifi, err := net.InterfaceByIndex(int(r.Scope_id)); err == nil {
				zone = ifi.Name
			}
		}
		addr = &net.UDPAddr{IP: net.IP(append([]byte(nil), r.Addr[:]...)), Port: int(ntohs(r.Port)), Zone: zone}
	case unix.AF_UNIX:
		r := (*unix.RawSockaddrUnix)(unsafe.Pointer(raw))
		pathLen := int(n) - int(unsafe.Offsetof(r.Path))
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
		nw := "unixgram"
		if sotype == unix.SOCK_SEQPACKET {
			nw = "unixpacket"
		}
		addr = &net.UnixAddr{Name: name, Net: nw}
	default:
		return nil
	}
	c.raw, c.len, c.addr = *raw, n, addr
	return addr
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
	c.raw = unix.RawSockaddrAny{}
	switch s := sa.(type) {
	case *unix.SockaddrInet4:
		r := (*unix.RawSockaddrInet4)(unsafe.Pointer(&c.raw))
		r.Family = unix.AF_INET
		r.Port = htons(s.Port)
		r.Addr = s.Addr
		c.len = unix.SizeofSockaddrInet4
	case *unix.SockaddrInet6:
		r := (*unix.RawSockaddrInet6)(unsafe.Pointer(&c.raw))
		r.Family = unix.AF_INET6
		r.Port = htons(s.Port)
		r.Addr = s.Addr
		r.Scope_id = s.ZoneId
		c.len = unix.SizeofSockaddrInet6
	case *unix.SockaddrUnix:
		r := (*unix.RawSockaddrUnix)(unsafe.Pointer(&c.raw))
		r.Family = unix.AF_UNIX
		name := s.Name
		if len(name) >= len(r.Path) {
			return fmt.Errorf("unix socket name too long: %w", unix.ENAMETOOLONG)
		}
		for i := 0; i < len(name); i++ {
			r.Path[i] = int8(name[i])
		}
		c.len = uint32(unsafe.Offsetof(r.Path)) + uint32(len(name))
		if len(name) > 0 && (name[0] == '@' || name[0] == 0) {
			r.Path[0] = 0 // abstract: the length, not a NUL, ends the name
		} else {
			c.len++ // count the terminating NUL of a path
		}
		c.name = name
	default:
		return fmt.Errorf("unsupported address %T: %w", sa, unix.EAFNOSUPPORT)
	}
	c.addr = addr
	return nil
}

// SendTo sends one datagram to addr (nil on a connected endpoint). When
// the socket cannot take it now, a copy waits in the buffer. A send that
// fails is reported to the protocol's ErrorReceived, as in asyncio, and the
// endpoint stays open.
func (t *datagramTransport) SendTo(b []byte, addr net.Addr) error {
	if t.address != nil && addr != nil && !sameAddr(addr, t.address) {
		return fmt.Errorf("sendto: invalid address %v: must be nil or %v: %w", addr, t.address, ErrInvalidArgument)
	}
	if t.closing || t.connLost {
		return fmt.Errorf("sendto: %w", ErrTransportClosed)
	}
	var raw *unix.RawSockaddrAny
	var rawLen uint32
	if addr != nil && t.address == nil {
		if err := t.send.toRaw(t.sock.Family(), addr); err != nil {
			return fmt.Errorf("sendto %v: %w", addr, err)
		}
		raw, rawLen = &t.send.raw, t.send.len
	}
	if len(t.queue) == 0 {
		err := sendTo(t.fd, b, raw, rawLen)
		if err == nil {
			return nil
		}
		if !isWouldBlock(err) {
			t.errorReceived(t.opError("write", addr, err))
			return nil
		}
		if err := t.loop.watchFD(t.fd, sdk.Write, &t.wh); err != nil {
			t.forceClose(err)
			return err
		}
		t.writing = true
	}
	d := pendingDatagram{data: append([]byte(nil), b...), hasAddr: raw != nil}
	if raw != nil {
		d.raw, d.rawLen = *raw, rawLen
	}
	t.queue = append(t.queue, d)
	t.size += len(b) + datagramOverhead
	t.maybePauseProtocol(t.size)
	return nil
}

func sameAddr(a, b net.Addr) bool {
	switch x := a.(type) {
	case *net.UDPAddr:
		y, ok := b.(*net.UDPAddr)
		return ok && x.Port == y.Port && x.IP.Equal(y.IP) && x.Zone == y.Zone
	case *net.UnixAddr:
		y, ok := b.(*net.UnixAddr)
		return ok && x.Name == y.Name
	}
	return a.String() == b.String()
}

func (t *datagramTransport) writeReady() {
	if t.connLost {
		return
	}
	for len(t.queue) > 0 {
		d := &t.queue[0]
		var raw *unix.RawSockaddrAny
		if d.hasAddr {
			raw = &d.raw
		}
		err := sendTo(t.fd, d.data, raw, d.rawLen)
		if err != nil && isWouldBlock(err) {
			break
		}
		t.size -= len(d.data) + datagramOverhead
		t.queue[0] = pendingDatagram{}
		t.queue = t.queue[1:]
		if err != nil {
			t.errorReceived(t.opError("write", nil, err))
			if t.connLost {
				return
			}
			break
		}
	}
	t.maybeResumeProtocol(t.size)
	if len(t.queue) > 0 {
		return
	}
	t.queue = nil
	t.stopWriting()
	if t.closing {
		t.connLost = true
		t.callConnectionLost()
	}
}

// Close stops receiving, sends what is buffered, then closes the socket and
// calls ConnectionLost(nil).
func (t *datagramTransport) Close() error {
	t.closeWhenDrained(t.size)
	return nil
}

// Abort closes at once, dropping buffered datagrams.
func (t *datagramTransport) Abort() { t.forceClose(nil) }

func (t *datagramTransport) forceClose(err error) {
	if t.connLost {
		return
	}
	if len(t.queue) > 0 {
		t.queue, t.size = nil, 0
	}
	t.stopWriting()
	t.lose(err)
}

// callConnectionLost tells the protocol, then closes the socket; once.
func (t *datagramTransport) callConnectionLost() { t.tellConnectionLost() }

// GetWriteBufferLimits (shared with the stream transport) and
// SetWriteBufferLimits are the flow-control water marks, as on stream transports (asyncio's datagram transport has them
// too); the DatagramTransport interface does not list them yet.
func (t *datagramTransport) SetWriteBufferLimits(high, low int) error {
	return t.setWriteBufferLimits(high, low, t.size)
}

func (t *datagramTransport) GetWriteBufferSize() int { return t.size }

func (t *datagramTransport) SetProtocol(p BaseProtocol) { t.setProtocol(p) }

func (t *datagramTransport) String() string {
	return fmt.Sprintf("<DatagramTransport fd=%d closing=%v bufsize=%d>", t.fd, t.closing, t.size)
}

var _ DatagramTransport = (*datagramTransport)(nil)
