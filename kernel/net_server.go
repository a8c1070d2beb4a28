package kernel

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// ErrServerClosed is what ServeForever returns once the server is closed,
// and what StartServing returns on a closed server.
var ErrServerClosed = errors.New("server is closed")

// defaultAcceptRetryDelay is how long a server stops accepting after the
// process ran out of descriptors or memory (asyncio: 1 second).
const defaultAcceptRetryDelay = time.Second

// ServerOptions are the keyword arguments of asyncio's create_server and
// create_unix_server. The zero value is asyncio's defaults.
type ServerOptions struct {
	// Sock serves an existing socket (bound, maybe listening) instead of
	// binding new ones; host and port must then be empty. The server takes
	// ownership.
	Sock *Socket
	// Family restricts the addresses the hosts resolve to (unix.AF_INET or
	// AF_INET6); 0 takes every family.
	Family int
	// Flags are getaddrinfo flags (sdk.AI*); AIPassive is always added.
	Flags int
	// Backlog is listen's backlog, and how many connections are accepted
	// per readiness event; 0 means 100.
	Backlog int
	// DisableReuseAddress turns off SO_REUSEADDR, which is on by default so
	// a restarted server can bind a port still in TIME_WAIT (asyncio:
	// reuse_address=False).
	DisableReuseAddress bool
	// ReusePort sets SO_REUSEPORT so several sockets can share the port.
	ReusePort bool
	// DeferServing creates the server without accepting yet; StartServing
	// or ServeForever starts it (asyncio: start_serving=False).
	DeferServing bool
	// AcceptRetryDelay is how long accepting pauses after accept fails for
	// lack of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM);
	// 0 means one second. Existing connections carry on meanwhile.
	AcceptRetryDelay time.Duration
	// KeepUnixSocketFile leaves a Unix server's socket file in place when
	// the server closes; by default Close removes it if it is still the
	// one the server bound (asyncio 3.13: cleanup_socket).
	KeepUnixSocketFile bool

	// SSL serves TLS with this configuration, which must carry a
	// certificate (Certificates, GetCertificate or GetConfigForClient)
	// (asyncio: ssl). Each connection's protocol hears ConnectionMade once
	// its handshake has succeeded; a failed handshake is the peer's
	// business and is logged at debug level only.
	SSL *tls.Config
	// SSLHandshakeTimeout bounds each handshake (0: 60 s), and
	// SSLShutdownTimeout the wait for the peer's close_notify after Close
	// (0: 30 s). Only with SSL.
	SSLHandshakeTimeout, SSLShutdownTimeout time.Duration
}

// Server is a listening server (asyncio.Server): one or more listening
// sockets whose accepted connections each get a protocol from the factory.
// Use it from the loop's goroutine. Close is idempotent, so `defer
// srv.Close()` is the Go form of `async with server`.
type Server struct {
	loop       *Loop
	factory    func() BaseProtocol
	socks      []*Socket // nil once closed
	ios        []*ioRef  // each socket's descriptor in the driver, once listening
	accepters  []func(fd int, peer *sdk.SockAddr, err error)
	backlog    int
	retryDelay time.Duration
	serving    bool
	listening  bool
	closed     bool
	retries    []TimerHandle

	conns   map[*streamTransport]struct{}
	waiters []*Future[struct{}]
	wokenUp bool // closed with no connections left: WaitClosed returns at once

	serveForever *Future[struct{}]

	unixPath string // the file a Unix server created, removed on Close
	unixIno  uint64

	tls *tlsSetup // nil: plain connections
}

func newServer(l *Loop, factory func() BaseProtocol, socks []*Socket, opts *ServerOptions, setup *tlsSetup) *Server {
	s := &Server{loop: l, factory: factory, socks: socks, backlog: opts.Backlog, retryDelay: opts.AcceptRetryDelay, tls: setup}
	if s.backlog <= 0 {
		s.backlog = defaultBacklog
	}
	if s.retryDelay <= 0 {
		s.retryDelay = defaultAcceptRetryDelay
	}
	return s
}

// CreateServer binds a TCP server on port of every address the hosts
// resolve to and returns it serving (asyncio: loop.create_server). No hosts,
// or a single "", means all interfaces: one socket for IPv4 and one for
// IPv6 where the machine has it. IPv6 sockets are IPV6_V6ONLY, so the two can
// share a port number. port "0" gives each socket a free port; read them with
// Sockets.
func CreateServer[P BaseProtocol](co *Co, factory func() P, hosts []string, port string, opts *ServerOptions) (*Server, error) {
	var o ServerOptions
	if opts != nil {
		o = *opts
	}
	l := co.Loop()
	if factory == nil {
		return nil, fmt.Errorf("create server: nil protocol factory: %w", ErrInvalidArgument)
	}
	setup, err := serverTLS(o.SSL, o.SSLHandshakeTimeout, o.SSLShutdownTimeout)
	if err != nil {
		return nil, fmt.Errorf("create server: %w", err)
	}
	var socks []*Socket
	if o.Sock != nil {
		if len(hosts) > 0 || port != "" {
			return nil, fmt.Errorf("create server: host/port and Sock are mutually exclusive: %w", ErrInvalidArgument)
		}
		if o.Sock.Type() != unix.SOCK_STREAM {
			return nil, fmt.Errorf("create server: a stream socket is required, got %s: %w", typeName(o.Sock.Type()), ErrInvalidArgument)
		}
		if err := o.Sock.SetBlocking(false); err != nil {
			return nil, fmt.Errorf("create server: %w", err)
		}
		socks = []*Socket{o.Sock}
	} else {
		var err error
		socks, err = bindTCP(co, hosts, port, &o)
		if err != nil {
			return nil, err
		}
	}
	s := newServer(l, eraseFactory(factory), socks, &o, setup)
	if !o.DeferServing {
		if err := s.StartServing(); err != nil {
			s.Close()
			return nil, fmt.Errorf("create server: %w", err)
		}
	}
	return s, nil
}

func eraseFactory[P BaseProtocol](f func() P) func() BaseProtocol {
	return func() BaseProtocol { return f() }
}

// bindTCP resolves every host and binds one listening socket per distinct
// address; on any failure it closes what it opened.
func bindTCP(co *Co, hosts []string, port string, o *ServerOptions) (socks []*Socket, err error) {
	if len(hosts) == 0 {
		hosts = []string{""}
	}
	hints := sdk.AddrinfoHints{Family: o.Family, SockType: unix.SOCK_STREAM, Flags: o.Flags | sdk.AIPassive}
	var infos []sdk.Addrinfo
	seen := map[sdk.Addrinfo]bool{}
	for _, h := range hosts {
		ais, err := resolve(co, h, port, hints)
		if err != nil {
			return nil, fmt.Errorf("create server: %w", err)
		}
		for _, ai := range ais {
			ai.CanonName = ""
			if !seen[ai] {
				seen[ai] = true
				infos = append(infos, ai)
			}
		}
	}
	defer func() {
		if err != nil {
			for _, s := range socks {
				s.Close()
			}
			socks = nil
		}
	}()
	for _, ai := range infos {
		s, err := NewSocket(ai.Family, unix.SOCK_STREAM, ai.Protocol)
		if err != nil {
			if errors.Is(err, unix.EAFNOSUPPORT) {
				continue // the family is not enabled on this machine
			}
			return socks, fmt.Errorf("create server: %w", err)
		}
		socks = append(socks, s)
		if !o.DisableReuseAddress {
			if err := s.SetsockoptInt(unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
				return socks, fmt.Errorf("create server: %w", err)
			}
		}
		if o.ReusePort {
			if err := s.SetsockoptInt(unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
				return socks, fmt.Errorf("create server: %w", err)
			}
		}
		if ai.Family == unix.AF_INET6 {
			// Without V6ONLY, "::" would also claim the IPv4 port and the
			// 0.0.0.0 socket of the same server could not bind.
			if err := s.SetsockoptInt(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
				return socks, fmt.Errorf("create server: %w", err)
			}
		}
		sa, err := addrPortToSockaddr(ai.Family, ai)
		if err != nil {
			return socks, fmt.Errorf("create server: %w", err)
		}
		if err := bindSockaddr(s, sa); err != nil {
			return socks, fmt.Errorf("create server: error while attempting to bind on address %v: %w", ai.Addr, err)
		}
	}
	if len(socks) == 0 {
		return nil, fmt.Errorf("create server: no usable address for %q port %q: %w", hosts, port, unix.EADDRNOTAVAIL)
	}
	return socks, nil
}

func bindSockaddr(s *Socket, sa unix.Sockaddr) error {
	fd, err := s.sysfd("bind")
	if err != nil {
		return err
	}
	if err := unix.Bind(fd, sa); err != nil {
		return &net.OpError{Op: "bind", Net: netName(s.family, s.sotype), Addr: sockaddrToAddr(sa, s.sotype), Err: os.NewSyscallError("bind", err)}
	}
	return nil
}

// CreateUnixServer binds a Unix stream server on path (asyncio:
// loop.create_unix_server). A path starting with "@" or NUL is an abstract
// name; otherwise a stale socket file at path is removed first, as asyncio
// does, and (unless KeepUnixSocketFile) removed again when the server
// closes. With opts.Sock, path must be "".
func CreateUnixServer[P BaseProtocol](co *Co, factory func() P, path string, opts *ServerOptions) (*Server, error) {
	var o ServerOptions
	if opts != nil {
		o = *opts
	}
	if factory == nil {
		return nil, fmt.Errorf("create unix server: nil protocol factory: %w", ErrInvalidArgument)
	}
	setup, err := serverTLS(o.SSL, o.SSLHandshakeTimeout, o.SSLShutdownTimeout)
	if err != nil {
		return nil, fmt.Errorf("create unix server: %w", err)
	}
	var sock *Socket
	var ino uint64
	switch {
	case o.Sock != nil && path != "":
		return nil, fmt.Errorf("create unix server: path and Sock are mutually exclusive: %w", ErrInvalidArgument)
	case o.Sock != nil:
		if o.Sock.Family() != unix.AF_UNIX || o.Sock.Type() != unix.SOCK_STREAM {
			return nil, fmt.Errorf("create unix server: an AF_UNIX SOCK_STREAM socket is required: %w", ErrInvalidArgument)
		}
		if err := o.Sock.SetBlocking(false); err != nil {
			return nil, fmt.Errorf("create unix server: %w", err)
		}
		sock = o.Sock
	case path == "":
		return nil, fmt.Errorf("create unix server: path or Sock is required: %w", ErrInvalidArgument)
	default:
		abstract := path[0] == '@' || path[0] == 0
		if !abstract {
			if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
				if err := os.Remove(path); err != nil {
					return nil, fmt.Errorf("create unix server: removing stale socket: %w", err)
				}
			}
		}
		s, err := NewSocket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			return nil, fmt.Errorf("create unix server: %w", err)
		}
		if err := s.Bind(&net.UnixAddr{Name: path, Net: "unix"}); err != nil {
			s.Close()
			return nil, fmt.Errorf("create unix server: %w", err)
		}
		if !abstract && !o.KeepUnixSocketFile {
			var st unix.Stat_t
			if unix.Stat(path, &st) == nil {
				ino = st.Ino
			}
		}
		sock = s
	}
	srv := newServer(co.Loop(), eraseFactory(factory), []*Socket{sock}, &o, setup)
	if ino != 0 {
		srv.unixPath, srv.unixIno = path, ino
	}
	if !o.DeferServing {
		if err := srv.StartServing(); err != nil {
			srv.Close()
			return nil, fmt.Errorf("create unix server: %w", err)
		}
	}
	return srv, nil
}

// GetLoop returns the loop the server runs on.
func (s *Server) GetLoop() *Loop { return s.loop }

// IsServing reports whether the server is accepting connections.
func (s *Server) IsServing() bool { return s.serving }

// Sockets returns a copy of the listening sockets, nil once closed. The
// server still owns them.
func (s *Server) Sockets() []*Socket {
	if s.closed {
		return nil
	}
	return append([]*Socket(nil), s.socks...)
}

// StartServing starts accepting connections; it is idempotent.
func (s *Server) StartServing() error {
	if s.closed {
		return ErrServerClosed
	}
	if s.serving {
		return nil
	}
	if !s.listening {
		for _, sock := range s.socks {
			if err := sock.Listen(s.backlog); err != nil {
				return err
			}
		}
		s.listening = true
		s.ios = make([]*ioRef, len(s.socks))
		s.accepters = make([]func(int, *sdk.SockAddr, error), len(s.socks))
		for i, sock := range s.socks {
			s.accepters[i] = func(fd int, peer *sdk.SockAddr, err error) { s.accepted(sock, i, fd, peer, err) }
		}
	}
	for i := range s.socks {
		if err := s.accept(i); err != nil {
			s.stopAccepting()
			return err
		}
	}
	s.serving = true
	return nil
}

// accept starts the accept operation on listening socket i: up to backlog
// connections per readiness event on the readiness driver, one completion
// per connection on any driver.
func (s *Server) accept(i int) error {
	if s.ios[i] == nil {
		r, err := s.loop.acquireIO(s.socks[i].Fd())
		if err != nil {
			return busyErr("accept", s.socks[i].Fd(), err)
		}
		s.ios[i] = r
	}
	if err := s.ios[i].f.Accept(s.backlog, s.accepters[i]); err != nil {
		return busyErr("accept", s.socks[i].Fd(), err)
	}
	return nil
}

func (s *Server) stopAccepting() {
	for _, r := range s.ios {
		if r != nil {
			r.f.AcceptStop()
		}
	}
	for _, th := range s.retries {
		th.Cancel()
	}
	s.retries = s.retries[:0]
}

// resumeLater starts accepting on socket i again after retryDelay. If that
// fails too (the driver refuses the registration while descriptors are
// still short), it tries again after another retryDelay, for as long as the
// server serves: a server that gave up here would stop accepting for good.
func (s *Server) resumeLater(ls *Socket, i int) {
	th, err := s.loop.CallLater(s.retryDelay, func() {
		if !s.serving || s.closed {
			return
		}
		if err := s.accept(i); err != nil {
			s.loop.CallExceptionHandler(ErrorContext{
				Message: fmt.Sprintf("resuming accepts on %v failed; trying again in %v", ls.LocalAddr(), s.retryDelay),
				Err:     err,
				Socket:  ls,
			})
			s.resumeLater(ls, i)
		}
	})
	if err == nil {
		s.retries = append(s.retries, th)
	}
}

// accepted is the accept operation's callback. When the process is out of
// descriptors or memory it stops accepting on this socket for retryDelay
// and reports it; the connections it already has keep running.
func (s *Server) accepted(ls *Socket, i int, fd int, peer *sdk.SockAddr, err error) {
	if s.closed {
		if fd >= 0 {
			unix.Close(fd)
		}
		return
	}
	if err != nil {
		err = &net.OpError{Op: "accept", Net: netName(ls.Family(), unix.SOCK_STREAM), Addr: ls.LocalAddr(), Err: os.NewSyscallError("accept4", err)}
		if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM) {
			s.loop.CallExceptionHandler(ErrorContext{
				Message: fmt.Sprintf("accept on %v out of system resource; pausing accepts for %v", ls.LocalAddr(), s.retryDelay),
				Err:     err,
				Socket:  ls,
			})
			s.ios[i].f.AcceptStop()
			s.resumeLater(ls, i)
			return
		}
		s.loop.CallExceptionHandler(ErrorContext{Message: "accept failed", Err: err, Socket: ls})
		return
	}
	s.newConnection(newSocket(fd, ls.family, ls.sotype, ls.proto), rawToAddr(peer, ls.sotype))
}

func (s *Server) newConnection(ns *Socket, peer net.Addr) {
	var proto BaseProtocol
	func() {
		defer func() {
			if r := recover(); r != nil {
				s.loop.CallExceptionHandler(ErrorContext{Message: "protocol factory failed", Err: newPanicError(r), Socket: ns})
				proto = nil
			}
		}()
		proto = s.factory()
	}()
	if proto == nil {
		ns.Close()
		return
	}
	if s.tls != nil {
		layer, err := newTLSProtocol(s.loop, proto, *s.tls, nil)
		if err != nil {
			s.loop.CallExceptionHandler(ErrorContext{Message: "creating a TLS layer for an accepted connection failed", Err: err, Protocol: proto, Socket: ns})
			ns.Close()
			return
		}
		proto = layer
	}
	if _, err := newStreamTransport(s.loop, ns, proto, nil, s, peer); err != nil {
		s.loop.CallExceptionHandler(ErrorContext{Message: "creating a transport for an accepted connection failed", Err: err, Protocol: proto, Socket: ns})
		ns.Close()
	}
}

func (s *Server) attach(t *streamTransport) {
	if s.conns == nil {
		s.conns = make(map[*streamTransport]struct{})
	}
	s.conns[t] = struct{}{}
}

func (s *Server) detach(t *streamTransport) {
	delete(s.conns, t)
	if len(s.conns) == 0 && s.closed {
		s.wakeup()
	}
}

func (s *Server) wakeup() {
	if s.wokenUp {
		return
	}
	s.wokenUp = true
	for _, w := range s.waiters {
		if !w.Done() {
			w.SetResult(struct{}{})
		}
	}
	s.waiters = nil
}

// Close stops accepting and closes the listening sockets; connections
// already accepted stay open (CloseClients and AbortClients end them).
// Closing twice does nothing.
func (s *Server) Close() error {
	if s.closed {
		return nil
	}
	s.stopAccepting()
	s.closed, s.serving = true, false
	var errs []error
	for i, r := range s.ios {
		if r != nil {
			s.loop.releaseIO(r)
			s.ios[i] = nil
		}
	}
	for _, sock := range s.socks {
		// Stop listening before closing: an out-of-process selector holds
		// a copy of the descriptor until its next Wait, and while any copy
		// is open the port would take connections (then reset them) instead
		// of refusing them. Shutting the read side of a listening socket
		// stops it listening for every copy at once.
		if fd := sock.Fd(); fd >= 0 {
			unix.Shutdown(fd, unix.SHUT_RD)
		}
		if err := sock.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.socks = nil
	if s.unixPath != "" {
		var st unix.Stat_t
		if unix.Stat(s.unixPath, &st) == nil && st.Ino == s.unixIno && st.Mode&unix.S_IFMT == unix.S_IFSOCK {
			os.Remove(s.unixPath)
		}
		s.unixPath = ""
	}
	if f := s.serveForever; f != nil && !f.Done() {
		f.SetResult(struct{}{})
	}
	if len(s.conns) == 0 {
		s.wakeup()
	}
	return errors.Join(errs...)
}

// CloseClients closes every connection the server accepted (asyncio 3.13).
func (s *Server) CloseClients() {
	for t := range s.conns {
		t.Close()
	}
}

// AbortClients aborts every connection the server accepted (asyncio 3.13).
func (s *Server) AbortClients() {
	for t := range s.conns {
		t.Abort()
	}
}

// WaitClosed waits until the server is closed and every connection it
// accepted has ended (asyncio 3.12+). Called after that, it returns at once.
func (s *Server) WaitClosed(co *Co) error {
	if s.wokenUp {
		return nil
	}
	w := CreateFuture[struct{}](s.loop)
	s.waiters = append(s.waiters, w)
	_, err := w.Await(co)
	return err
}

// ServeForever accepts connections until the server is closed, then
// returns ErrServerClosed. If the task running it is cancelled, it closes the
// server, waits for WaitClosed and returns the cancellation. Only one
// ServeForever may run per server.
func (s *Server) ServeForever(co *Co) error {
	if s.serveForever != nil {
		return fmt.Errorf("serve forever: already being served by another task: %w", ErrInvalidState)
	}
	if err := s.StartServing(); err != nil {
		return fmt.Errorf("serve forever: %w", err)
	}
	f := CreateFuture[struct{}](s.loop)
	s.serveForever = f
	defer func() { s.serveForever = nil }()
	_, err := f.Await(co)
	if err != nil {
		s.Close()
		if werr := s.WaitClosed(co); werr != nil && !errors.Is(werr, ErrCancelled) {
			return errors.Join(err, werr)
		}
		return err
	}
	return ErrServerClosed
}

func (s *Server) String() string {
	var addrs []string
	for _, sock := range s.socks {
		addrs = append(addrs, fmt.Sprint(sock.LocalAddr()))
	}
	return fmt.Sprintf("<Server sockets=[%s] serving=%v conns=%d>", strings.Join(addrs, " "), s.serving, len(s.conns))
}

// ConnectAcceptedSocket wraps a connection accepted outside the loop in a
// transport and protocol (asyncio: loop.connect_accepted_socket). The
// transport takes ownership of sock. Of opts (nil for none) only the TLS
// options apply: with SSL set, the server's side of a TLS handshake runs
// first and the call returns once it has succeeded.
func ConnectAcceptedSocket[P BaseProtocol](co *Co, factory func() P, sock *Socket, opts *ServerOptions) (Transport, P, error) {
	var zero P
	var o ServerOptions
	if opts != nil {
		o = *opts
	}
	if sock == nil || factory == nil {
		return nil, zero, fmt.Errorf("connect accepted socket: nil socket or factory: %w", ErrInvalidArgument)
	}
	if sock.Type() != unix.SOCK_STREAM {
		return nil, zero, fmt.Errorf("connect accepted socket: a stream socket is required, got %s: %w", typeName(sock.Type()), ErrInvalidArgument)
	}
	setup, err := serverTLS(o.SSL, o.SSLHandshakeTimeout, o.SSLShutdownTimeout)
	if err != nil {
		return nil, zero, fmt.Errorf("connect accepted socket: %w", err)
	}
	return startConn(co, factory, sock, setup)
}

// startTransport makes the protocol and the transport for a connected
// socket and waits until ConnectionMade has run.
func startTransport[P BaseProtocol](co *Co, factory func() P, sock *Socket) (Transport, P, error) {
	var zero P
	l := co.Loop()
	p, err := callGuarded(func() (P, error) { return factory(), nil })
	if err != nil {
		sock.Close()
		return nil, zero, fmt.Errorf("protocol factory: %w", err)
	}
	waiter := CreateFuture[struct{}](l)
	t, err := newStreamTransport(l, sock, p, waiter, nil, nil)
	if err != nil {
		sock.Close()
		return nil, zero, err
	}
	if _, err := waiter.Await(co); err != nil {
		t.Abort()
		return nil, zero, err
	}
	return t, p, nil
}

var _ syscall.Conn = (*Socket)(nil)
