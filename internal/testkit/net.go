package testkit

import (
	"fmt"
	"net"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
)

// Loopback is the address the kit's servers listen on: only loopback
// addresses are ever the target of a test's traffic.
const Loopback = "127.0.0.1"

// SocketPair returns a connected pair of non-blocking kernel sockets
// (AF_UNIX, sotype: unix.SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET), closed
// when t ends.
func SocketPair(t T, sotype int) (*kernel.Socket, *kernel.Socket) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, sotype|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fatal(t, "socketpair", err)
	}
	a, err := kernel.SocketFromFD(fds[0])
	if err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		fatal(t, "SocketFromFD", err)
	}
	b, err := kernel.SocketFromFD(fds[1])
	if err != nil {
		a.Close()
		unix.Close(fds[1])
		fatal(t, "SocketFromFD", err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// Port returns the TCP port of srv's first listening socket, as
// CreateConnection takes it.
func Port(srv *kernel.Server) (string, error) {
	socks := srv.Sockets()
	if len(socks) == 0 {
		return "", fmt.Errorf("testkit: the server lists no listening socket")
	}
	a, ok := socks[0].LocalAddr().(*net.TCPAddr)
	if !ok {
		return "", fmt.Errorf("testkit: the server's socket has a %T, not a *net.TCPAddr", socks[0].LocalAddr())
	}
	return strconv.Itoa(a.Port), nil
}

// Connect starts a TCP server on Loopback, on a port the system picks,
// whose connections get protocols from serve, and connects client to it.
// It runs in a coroutine, as CreateServer and CreateConnection do; the
// caller closes the server (defer srv.Close()) and the transport. On error
// nothing is left open.
func Connect[S, C kernel.BaseProtocol](co *kernel.Co, serve func() S, client C) (*kernel.Server, kernel.Transport, error) {
	srv, err := kernel.CreateServer(co, serve, []string{Loopback}, "0", nil)
	if err != nil {
		return nil, nil, err
	}
	port, err := Port(srv)
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	tr, _, err := kernel.CreateConnection(co, func() C { return client }, Loopback, port, nil)
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	return srv, tr, nil
}

// Echo is a stream protocol that writes back whatever it receives and
// keeps nothing but its transport. At EOF it lets the transport close,
// which flushes the echo first, so the peer reads every byte, then EOF.
type Echo struct{ tr kernel.Transport }

// NewEcho is Echo's factory, for CreateServer.
func NewEcho() *Echo { return &Echo{} }

// ConnectionMade, ConnectionLost, DataReceived and EOFReceived are
// kernel.Protocol's.
func (p *Echo) ConnectionMade(t kernel.BaseTransport) { p.tr = t.(kernel.Transport) }
func (p *Echo) ConnectionLost(error)                  {}
func (p *Echo) DataReceived(b []byte)                 { p.tr.Write(b) }
func (p *Echo) EOFReceived() bool                     { return false }

// EchoPair connects client to a new echo server (Connect with NewEcho).
func EchoPair[C kernel.BaseProtocol](co *kernel.Co, client C) (*kernel.Server, kernel.Transport, error) {
	return Connect(co, NewEcho, client)
}
