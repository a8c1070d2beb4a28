package kernel

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// ConnOptions are the keyword arguments of asyncio's create_connection.
// The zero value tries the resolved addresses one after another.
type ConnOptions struct {
	// Sock is an already connected stream socket to wrap; host, port and
	// the other options must then be empty. The transport takes ownership.
	Sock *Socket
	// LocalAddr, "host:port", is resolved like the remote address and the
	// socket bound to it before connecting (asyncio: local_addr).
	LocalAddr string
	// Family, Proto and Flags are passed to getaddrinfo (asyncio: family,
	// proto, flags); Family also restricts LocalAddr.
	Family, Proto, Flags int
	// HappyEyeballsDelay, when positive, races the addresses RFC 8305
	// style: a new attempt starts every HappyEyeballsDelay (or as soon as
	// the previous one fails) and the first connection wins. Zero tries them
	// strictly one after another, as asyncio does by default.
	HappyEyeballsDelay time.Duration
	// Interleave reorders the addresses to alternate families, putting
	// this many of the first family first (asyncio: interleave). With
	// HappyEyeballsDelay set it defaults to 1; otherwise 0 keeps the
	// resolver's order.
	Interleave int

	// SSL makes the connection TLS over TCP (or Unix) with this
	// configuration (asyncio: ssl); certificates and the server's name are
	// verified unless the config says otherwise. crypto/tls does the work,
	// layered over the transport (kernel/tls_protocol.go).
	SSL *tls.Config
	// ServerHostname is the name the server's certificate must match
	// (asyncio: server_hostname): nil means tls.Config.ServerName if set,
	// else the host connected to; a pointer to "" turns name matching off,
	// which the config must allow (InsecureSkipVerify). Only with SSL.
	ServerHostname *string
	// SSLHandshakeTimeout bounds the TLS handshake (0: 60 s), and
	// SSLShutdownTimeout the wait for the peer's close_notify after Close
	// (0: 30 s). Only with SSL.
	SSLHandshakeTimeout, SSLShutdownTimeout time.Duration
}

// ConnectError is what CreateConnection returns when every address failed:
// one error per attempt, in order. errors.Is and errors.As see each of them
// (for example errors.Is(err, syscall.ECONNREFUSED)).
type ConnectError struct {
	Host, Port string
	Errs       []error
}

func (e *ConnectError) Error() string {
	if len(e.Errs) == 1 {
		return e.Errs[0].Error()
	}
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	target := e.Host
	if e.Port != "" {
		target = net.JoinHostPort(e.Host, e.Port)
	}
	return fmt.Sprintf("connect to %s: all %d attempts failed: %s", target, len(e.Errs), strings.Join(msgs, "; "))
}

// Unwrap exposes every attempt's error.
func (e *ConnectError) Unwrap() []error { return e.Errs }

// CreateConnection opens a TCP connection to host and port and couples it
// with a protocol made by factory (asyncio: transport, protocol = await
// loop.create_connection(...)). It runs inside a task: co is the task's
// coroutine handle. Names are resolved through the loop's resolver
// (Loop.Getaddrinfo); numeric addresses cost no lookup. When it returns, the
// protocol's ConnectionMade has run. TCP_NODELAY is set.
func CreateConnection[P BaseProtocol](co *Co, factory func() P, host, port string, opts *ConnOptions) (Transport, P, error) {
	var zero P
	var o ConnOptions
	if opts != nil {
		o = *opts
	}
	if factory == nil {
		return nil, zero, fmt.Errorf("create connection: nil protocol factory: %w", ErrInvalidArgument)
	}
	setup, err := clientTLS(o.SSL, host, o.ServerHostname, o.SSLHandshakeTimeout, o.SSLShutdownTimeout)
	if err != nil {
		return nil, zero, fmt.Errorf("create connection: %w", err)
	}
	if o.Sock != nil {
		if host != "" || port != "" || o.LocalAddr != "" || o.Family != 0 || o.Proto != 0 || o.Flags != 0 {
			return nil, zero, fmt.Errorf("create connection: host, port, LocalAddr, Family, Proto and Flags cannot be combined with Sock: %w", ErrInvalidArgument)
		}
		if o.Sock.Type() != unix.SOCK_STREAM {
			return nil, zero, fmt.Errorf("create connection: a stream socket is required, got %s: %w", typeName(o.Sock.Type()), ErrInvalidArgument)
		}
		return startConn(co, factory, o.Sock, setup)
	}
	if host == "" && port == "" {
		return nil, zero, fmt.Errorf("create connection: host and port were not specified and no Sock given: %w", ErrInvalidArgument)
	}
	hints := sdk.AddrinfoHints{Family: o.Family, SockType: unix.SOCK_STREAM, Protocol: o.Proto, Flags: o.Flags}
	infos, err := resolve(co, host, port, hints)
	if err != nil {
		return nil, zero, fmt.Errorf("create connection: %w", err)
	}
	targets, err := addrinfoTargets(infos)
	if err != nil {
		return nil, zero, fmt.Errorf("create connection: %w", err)
	}
	var locals []dialTarget
	if o.LocalAddr != "" {
		lh, lp, err := net.SplitHostPort(o.LocalAddr)
		if err != nil {
			return nil, zero, fmt.Errorf("create connection: local address: %v: %w", err, ErrInvalidArgument)
		}
		lhints := hints
		lhints.Flags |= sdk.AIPassive
		lis, err := resolve(co, lh, lp, lhints)
		if err != nil {
			return nil, zero, fmt.Errorf("create connection: local address: %w", err)
		}
		if locals, err = addrinfoTargets(lis); err != nil {
			return nil, zero, fmt.Errorf("create connection: local address: %w", err)
		}
	}
	interleave := o.Interleave
	if interleave == 0 && o.HappyEyeballsDelay > 0 {
		interleave = 1
	}
	if interleave > 0 {
		targets = interleaveFamilies(targets, interleave)
	}
	sock, err := dial(co, targets, locals, o.HappyEyeballsDelay, host, port)
	if err != nil {
		return nil, zero, err
	}
	return startConn(co, factory, sock, setup)
}

// CreateUnixConnection connects to the Unix stream socket at path ("@name"
// or "\x00name" for an abstract one) (asyncio: create_unix_connection). With
// opts.Sock set, path must be "" and the other options unset.
func CreateUnixConnection[P BaseProtocol](co *Co, factory func() P, path string, opts *ConnOptions) (Transport, P, error) {
	var zero P
	var o ConnOptions
	if opts != nil {
		o = *opts
	}
	if factory == nil {
		return nil, zero, fmt.Errorf("create unix connection: nil protocol factory: %w", ErrInvalidArgument)
	}
	if o.LocalAddr != "" || o.Family != 0 || o.Proto != 0 || o.Flags != 0 || o.HappyEyeballsDelay != 0 || o.Interleave != 0 {
		return nil, zero, fmt.Errorf("create unix connection: only Sock and the TLS options apply to Unix connections: %w", ErrInvalidArgument)
	}
	setup, err := clientTLS(o.SSL, "", o.ServerHostname, o.SSLHandshakeTimeout, o.SSLShutdownTimeout)
	if err != nil {
		return nil, zero, fmt.Errorf("create unix connection: %w", err)
	}
	if o.Sock != nil {
		if path != "" {
			return nil, zero, fmt.Errorf("create unix connection: path and Sock are mutually exclusive: %w", ErrInvalidArgument)
		}
		if o.Sock.Family() != unix.AF_UNIX || o.Sock.Type() != unix.SOCK_STREAM {
			return nil, zero, fmt.Errorf("create unix connection: an AF_UNIX SOCK_STREAM socket is required: %w", ErrInvalidArgument)
		}
		return startConn(co, factory, o.Sock, setup)
	}
	if path == "" {
		return nil, zero, fmt.Errorf("create unix connection: path or Sock is required: %w", ErrInvalidArgument)
	}
	addr := &net.UnixAddr{Name: path, Net: "unix"}
	sa, err := addrToSockaddr(unix.AF_UNIX, addr)
	if err != nil {
		return nil, zero, fmt.Errorf("create unix connection: %w", err)
	}
	sock, err := dial(co, []dialTarget{{family: unix.AF_UNIX, sa: sa, addr: addr}}, nil, 0, path, "")
	if err != nil {
		return nil, zero, err
	}
	return startConn(co, factory, sock, setup)
}

// resolve is the one place the networking code asks for addresses: the
// loop's resolver seam (Loop.Getaddrinfo).
func resolve(co *Co, host, port string, hints sdk.AddrinfoHints) ([]sdk.Addrinfo, error) {
	f, err := co.Loop().Getaddrinfo(host, port, hints)
	if err != nil {
		return nil, err
	}
	ais, err := f.Await(co)
	if err != nil {
		return nil, err
	}
	if len(ais) == 0 {
		return nil, fmt.Errorf("getaddrinfo(%q, %q) returned no addresses: %w", host, port, unix.EADDRNOTAVAIL)
	}
	return ais, nil
}

// dialTarget is one address to connect to (or bind locally).
type dialTarget struct {
	family int
	proto  int
	sa     unix.Sockaddr
	addr   net.Addr
}

func addrinfoTargets(ais []sdk.Addrinfo) ([]dialTarget, error) {
	out := make([]dialTarget, 0, len(ais))
	for _, ai := range ais {
		sa, err := addrPortToSockaddr(ai.Family, ai)
		if err != nil {
			return nil, err
		}
		out = append(out, dialTarget{family: ai.Family, proto: ai.Protocol, sa: sa, addr: sockaddrToAddr(sa, unix.SOCK_STREAM)})
	}
	return out, nil
}

// addrPortToSockaddr converts a resolver result for a socket of family.
func addrPortToSockaddr(family int, ai sdk.Addrinfo) (unix.Sockaddr, error) {
	a := ai.Addr.Addr()
	if !a.IsValid() {
		return nil, fmt.Errorf("invalid resolved address: %w", ErrInvalidArgument)
	}
	port := int(ai.Addr.Port())
	switch family {
	case unix.AF_INET:
		if !a.Unmap().Is4() {
			return nil, fmt.Errorf("IPv6 address %v for AF_INET: %w", a, unix.EAFNOSUPPORT)
		}
		return &unix.SockaddrInet4{Port: port, Addr: a.Unmap().As4()}, nil
	case unix.AF_INET6:
		sa := &unix.SockaddrInet6{Port: port, Addr: a.As16()}
		if z := a.Zone(); z != "" {
			zs, err := ipSockaddr(unix.AF_INET6, net.IPv6loopback, 0, z)
			if err != nil {
				return nil, err
			}
			sa.ZoneId = zs.(*unix.SockaddrInet6).ZoneId
		}
		return sa, nil
	}
	return nil, fmt.Errorf("resolved address of %s: %w", familyName(family), unix.EAFNOSUPPORT)
}

// interleaveFamilies reorders targets so families alternate, the first
// family first with firstCount entries (RFC 8305 section 4; asyncio's
// _interleave_addrinfos).
func interleaveFamilies(ts []dialTarget, firstCount int) []dialTarget {
	var order []int
	byFamily := map[int][]dialTarget{}
	for _, t := range ts {
		if _, ok := byFamily[t.family]; !ok {
			order = append(order, t.family)
		}
		byFamily[t.family] = append(byFamily[t.family], t)
	}
	out := make([]dialTarget, 0, len(ts))
	if len(order) > 0 && firstCount > 1 {
		first := byFamily[order[0]]
		n := min(firstCount-1, len(first))
		out = append(out, first[:n]...)
		byFamily[order[0]] = first[n:]
	}
	for len(out) < len(ts) {
		for _, f := range order {
			if q := byFamily[f]; len(q) > 0 {
				out = append(out, q[0])
				byFamily[f] = q[1:]
			}
		}
	}
	return out
}

// dial connects to the first target that accepts, with staggered attempts
// when delay > 0, and returns the connected socket.
func dial(co *Co, targets, locals []dialTarget, delay time.Duration, host, port string) (*Socket, error) {
	c := &connector{
		l: co.Loop(), targets: targets, locals: locals, delay: delay,
		errs:   make([]error, len(targets)),
		result: CreateFuture[*Socket](co.Loop()),
		host:   host, port: port,
	}
	c.result.AddDoneCallback(func(f *Future[*Socket]) {
		if f.Cancelled() {
			c.cleanup(nil)
		}
	})
	c.startNext()
	sock, err := c.result.Await(co)
	if err != nil {
		c.cleanup(nil) // cancelled: the done callback may not have run yet
		return nil, err
	}
	return sock, nil
}

// connector runs the connection attempts of one dial on loop callbacks.
type connector struct {
	l          *Loop
	targets    []dialTarget
	locals     []dialTarget
	delay      time.Duration
	next       int
	inflight   []*connAttempt
	errs       []error
	result     *Future[*Socket]
	timer      TimerHandle
	host, port string
}

type connAttempt struct {
	idx  int
	sock *Socket
	io   *ioRef
	sa   sdk.SockAddr
}

func (c *connector) startNext() {
	for !c.result.Done() && c.next < len(c.targets) {
		i := c.next
		c.next++
		if err := c.begin(i); err != nil {
			c.errs[i] = err
			continue // try the next address at once
		}
		if c.delay > 0 && c.next < len(c.targets) {
			c.timer.Cancel()
			c.timer, _ = c.l.CallLater(c.delay, c.startNext)
		}
		return
	}
	if !c.result.Done() && len(c.inflight) == 0 && c.next >= len(c.targets) {
		c.fail()
	}
}

// begin starts attempt i as a connect operation on the seam, or returns
// why it could not start.
func (c *connector) begin(i int) error {
	t := c.targets[i]
	sock, err := NewSocket(t.family, unix.SOCK_STREAM, t.proto)
	if err != nil {
		return err
	}
	if err := c.bindLocal(sock, t.family); err != nil {
		sock.Close()
		return err
	}
	att := &connAttempt{idx: i, sock: sock}
	if att.sa, err = toSockAddr(t.sa); err != nil {
		sock.Close()
		return c.opError(sock, t, err)
	}
	if att.io, err = c.l.acquireIO(sock.Fd()); err != nil {
		sock.Close()
		return err
	}
	if err := att.io.f.Connect(&att.sa, func(err error) { c.connected(att, err) }); err != nil {
		c.l.releaseIO(att.io)
		sock.Close()
		return err
	}
	c.inflight = append(c.inflight, att)
	return nil
}

func (c *connector) opError(sock *Socket, t dialTarget, err error) error {
	return &net.OpError{Op: "dial", Net: netName(t.family, unix.SOCK_STREAM), Addr: t.addr, Err: os.NewSyscallError("connect", err)}
}

func (c *connector) bindLocal(sock *Socket, family int) error {
	if len(c.locals) == 0 {
		return nil
	}
	var errs []error
	for _, lt := range c.locals {
		if lt.family != family {
			continue
		}
		err := bindSockaddr(sock, lt.sa)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return fmt.Errorf("no local address of family %s to bind: %w", familyName(family), unix.EADDRNOTAVAIL)
	}
	return errors.Join(errs...)
}

// connected is an attempt's completion: the connect has finished, one way
// or the other (or was cancelled by cleanup, which closed the socket).
func (c *connector) connected(att *connAttempt, err error) {
	if errors.Is(err, sdk.ErrCanceled) {
		return
	}
	c.drop(att)
	if err != nil {
		att.sock.Close()
		c.errs[att.idx] = c.opError(att.sock, c.targets[att.idx], err)
		c.timer.Cancel()
		c.startNext()
		return
	}
	c.succeed(att.sock)
}

func (c *connector) drop(att *connAttempt) {
	c.l.releaseIO(att.io)
	for i, a := range c.inflight {
		if a == att {
			c.inflight = append(c.inflight[:i], c.inflight[i+1:]...)
			break
		}
	}
}

func (c *connector) succeed(sock *Socket) {
	if c.result.Done() { // cancelled meanwhile
		sock.Close()
		return
	}
	c.cleanup(sock)
	c.result.SetResult(sock)
}

func (c *connector) fail() {
	var errs []error
	for _, err := range c.errs {
		if err != nil {
			errs = append(errs, err)
		}
	}
	c.result.SetException(&ConnectError{Host: c.host, Port: c.port, Errs: errs})
}

// cleanup ends every attempt but keep's.
func (c *connector) cleanup(keep *Socket) {
	c.timer.Cancel()
	for _, a := range c.inflight {
		c.l.releaseIO(a.io)
		if a.sock != keep {
			a.sock.Close()
		}
	}
	c.inflight = nil
}
