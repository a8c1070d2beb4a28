package kernel

import (
	"errors"
	"fmt"
	"net"
	"os"

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
	to      sdk.SockAddr
	hasAddr bool
}

// datagramTransport is the DatagramTransport of UDP and Unix datagram
// sockets, on the I/O seam: datagrams arrive from a receive operation
// started once, into the loop's shared buffer; a send is tried at once and
// queued only when the socket refuses it, the queue then sent one send
// operation at a time (the readiness driver sends on while the socket
// takes them, one writable event draining what it can).
type datagramTransport struct {
	transportCore
	dp DatagramProtocol

	address net.Addr // the connected peer, or nil

	queue []pendingDatagram
	size  int

	send rawAddr // last destination converted
	recv rawAddr // last source seen

	allocFn func(hint int) []byte
	recvFn  func(data []byte, from *sdk.SockAddr, err error)
	sentFn  func(err error)
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
	if err := t.init(t, l, sock, fd, sock.RemoteAddr()); err != nil {
		return nil, fmt.Errorf("datagram transport: %w", err)
	}
	t.allocFn, t.recvFn, t.sentFn = t.alloc, t.received, t.sent
	t.setProtocol(p)
	if _, err := l.CallSoon(func() { t.start(waiter) }); err != nil {
		t.releaseIO()
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
	if ok && !t.closing && t.io != nil {
		if err := t.io.f.RecvFromStart(t.allocFn, t.recvFn); err != nil {
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

// alloc gives the receive operation the loop's shared buffer.
func (t *datagramTransport) alloc(int) []byte {
	if t.dp == nil {
		t.protocolPanicked("DatagramReceived", fmt.Sprintf("protocol %T is not a DatagramProtocol", t.proto))
		return nil
	}
	return t.loop.recvBuf()
}

// received is the receive operation's callback: one datagram and its
// sender.
func (t *datagramTransport) received(data []byte, from *sdk.SockAddr, err error) {
	if t.connLost {
		return
	}
	if err != nil {
		// ICMP errors (ECONNREFUSED after sending to a closed port on a
		// connected socket) are reported and the endpoint goes on.
		t.errorReceived(t.opError("read", t.address, err))
		return
	}
	addr := t.recv.fromRaw(from, t.sock.Type())
	defer func() {
		if r := recover(); r != nil {
			t.receivePanicked("DatagramReceived", r)
		}
	}()
	t.dp.DatagramReceived(data, addr)
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
	var to *sdk.SockAddr
	if addr != nil && t.address == nil {
		if err := t.send.toRaw(t.sock.Family(), addr); err != nil {
			return fmt.Errorf("sendto %v: %w", addr, err)
		}
		to = &t.send.sa
	}
	if len(t.queue) == 0 {
		err := t.io.f.TrySendTo(b, to)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sdk.ErrWouldBlock) {
			t.errorReceived(t.opError("write", addr, err))
			return nil
		}
	}
	d := pendingDatagram{data: append([]byte(nil), b...), hasAddr: to != nil}
	if to != nil {
		d.to = *to
	}
	t.queue = append(t.queue, d)
	t.size += len(b) + datagramOverhead
	if err := t.flush(); err != nil {
		t.forceClose(err)
		return err
	}
	t.maybePauseProtocol(t.size)
	return nil
}

// flush submits the datagram at the head of the queue, unless a send is
// in flight already.
func (t *datagramTransport) flush() error {
	if t.writing || len(t.queue) == 0 || t.io == nil {
		return nil
	}
	d := &t.queue[0]
	var to *sdk.SockAddr
	if d.hasAddr {
		to = &d.to
	}
	if err := t.io.f.SendTo(d.data, to, t.sentFn); err != nil {
		return err
	}
	t.writing = true
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

// sent is the send operation's completion: the head datagram went out (or
// failed, which the protocol hears of); the next one is submitted.
func (t *datagramTransport) sent(err error) {
	t.writing = false
	if t.connLost {
		return
	}
	d := &t.queue[0]
	t.size -= len(d.data) + datagramOverhead
	t.queue[0] = pendingDatagram{}
	t.queue = t.queue[1:]
	if err != nil {
		t.errorReceived(t.opError("write", nil, err))
		if t.connLost {
			return
		}
	}
	t.maybeResumeProtocol(t.size)
	if len(t.queue) > 0 {
		if err := t.flush(); err != nil {
			t.forceClose(err)
		}
		return
	}
	t.queue = nil
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
		t.queue, t.size = nil, 0 // a send in flight keeps its datagram
	}
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
