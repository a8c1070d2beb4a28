package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// The sock_* methods of asyncio: coroutine versions of the socket calls,
// for code that works with sockets directly rather than through transports.
//
// Each one first tries its system call and only when the socket would block
// (EAGAIN) watches the descriptor and suspends the task until it is ready,
// so an operation that can complete at once never touches the selector.
// The watch is a one-shot: the readiness callback removes it before it wakes
// the task, and a task cancelled while it waits removes it too, so a
// descriptor is never left registered on behalf of a coroutine that has
// gone. Only one operation per direction may wait on a descriptor at a time:
// a second would silently replace the first one's watch, so it fails with
// ErrFDBusy instead (as does an operation on a descriptor a transport is
// reading or writing).

// ErrFDBusy: a sock_* operation on a descriptor that is already watched in
// the same direction, by another sock_* operation, a transport or
// AddReader/AddWriter.
var ErrFDBusy = errors.New("file descriptor is already watched in that direction")

// sockCheck is the guard every sock_* operation starts with: a live loop,
// an open non-blocking socket. It returns the loop and the descriptor.
func sockCheck(co *Co, sock *Socket, op string) (*Loop, int, error) {
	if co == nil {
		return nil, -1, fmt.Errorf("%s: nil coroutine handle: %w", op, unix.EINVAL)
	}
	l := co.loop
	if err := l.checkUsable(); err != nil {
		return nil, -1, fmt.Errorf("%s: %w", op, err)
	}
	if sock == nil {
		return nil, -1, fmt.Errorf("%s: nil socket: %w", op, ErrInvalidFD)
	}
	fd, err := sock.sysfd(op)
	if err != nil {
		return nil, -1, err
	}
	if sock.blocking {
		return nil, -1, fmt.Errorf("%s: fd %d: %w", op, fd, ErrBlockingSocket)
	}
	return l, fd, nil
}

// waitFD suspends co until fd is ready for ev (sdk.Read or sdk.Write).
func (l *Loop) waitFD(co *Co, fd int, ev sdk.Events, op string) error {
	if slot, ok := l.fds.byFD.get(fd); ok && l.fds.slots[slot].interest&ev != 0 {
		return fmt.Errorf("%s: fd %d (%v): %w", op, fd, ev, ErrFDBusy)
	}
	add, remove := l.AddReader, l.RemoveReader
	if ev == sdk.Write {
		add, remove = l.AddWriter, l.RemoveWriter
	}
	f := CreateFuture[struct{}](l)
	err := add(fd, func() {
		remove(fd)
		f.SetResult(struct{}{})
	})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if _, err := f.Await(co); err != nil {
		if !f.Done() || f.Cancelled() {
			remove(fd)
		}
		return err
	}
	return nil
}

// waitSock is the EAGAIN step of the sock_* retry loops: wait until fd is
// ready for ev, then return sock's descriptor afresh, since the socket may
// have been closed while co waited and the retry must fail with that
// rather than use a stale number.
func (l *Loop) waitSock(co *Co, sock *Socket, fd int, ev sdk.Events, op string) (int, error) {
	if err := l.waitFD(co, fd, ev, op); err != nil {
		return -1, err
	}
	return sock.sysfd(op)
}

// sockErr wraps a failed system call the way package net does, so callers
// can match the errno with errors.Is and read the addresses with errors.As.
func sockErr(op, call string, sock *Socket, addr net.Addr, err error) error {
	if errors.Is(err, ErrSocketClosed) {
		return err
	}
	return &net.OpError{Op: op, Net: netName(sock.family, sock.sotype), Source: sock.LocalAddr(), Addr: addr, Err: osErr(call, err)}
}

// SockRecv receives up to n bytes (asyncio: loop.sock_recv). A nil slice
// with a nil error means the peer closed its end (EOF).
func SockRecv(co *Co, sock *Socket, n int) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("sock_recv: negative size %d: %w", n, unix.EINVAL)
	}
	buf := make([]byte, n)
	got, err := SockRecvInto(co, sock, buf)
	if err != nil || got == 0 {
		return nil, err
	}
	return buf[:got], nil
}

// SockRecvInto receives into buf and returns the number of bytes received,
// 0 at EOF (asyncio: loop.sock_recv_into).
func SockRecvInto(co *Co, sock *Socket, buf []byte) (int, error) {
	const op = "sock_recv_into"
	l, fd, err := sockCheck(co, sock, op)
	if err != nil {
		return 0, err
	}
	for {
		n, err := unix.Read(fd, buf)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if fd, err = l.waitSock(co, sock, fd, sdk.Read, op); err != nil {
				return 0, err
			}
			continue
		}
		return 0, sockErr("read", "recv", sock, sock.RemoteAddr(), err)
	}
}

// SockRecvfrom receives one datagram of up to n bytes and its sender
// (asyncio: loop.sock_recvfrom). A longer datagram is truncated, as with
// recvfrom(2).
func SockRecvfrom(co *Co, sock *Socket, n int) ([]byte, net.Addr, error) {
	if n < 0 {
		return nil, nil, fmt.Errorf("sock_recvfrom: negative size %d: %w", n, unix.EINVAL)
	}
	buf := make([]byte, n)
	got, from, err := SockRecvfromInto(co, sock, buf)
	if err != nil {
		return nil, nil, err
	}
	return buf[:got], from, nil
}

// SockRecvfromInto receives one datagram into buf and returns its length
// (at most len(buf)) and sender (asyncio: loop.sock_recvfrom_into). The
// sender is nil on a connected stream socket.
func SockRecvfromInto(co *Co, sock *Socket, buf []byte) (int, net.Addr, error) {
	const op = "sock_recvfrom_into"
	l, fd, err := sockCheck(co, sock, op)
	if err != nil {
		return 0, nil, err
	}
	for {
		n, sa, err := unix.Recvfrom(fd, buf, 0)
		switch err {
		case nil:
			var from net.Addr
			if sa != nil {
				from = sockaddrToAddr(sa, sock.sotype)
			}
			return n, from, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if fd, err = l.waitSock(co, sock, fd, sdk.Read, op); err != nil {
				return 0, nil, err
			}
			continue
		}
		return 0, nil, sockErr("read", "recvfrom", sock, nil, err)
	}
}

// SockSendall sends all of data, waiting for the socket to drain as often
// as needed (asyncio: loop.sock_sendall). On an error or a cancellation,
// part of data may have been sent, and there is no telling how much the
// peer received. MSG_NOSIGNAL keeps a closed peer from raising SIGPIPE: the
// write fails with EPIPE instead.
func SockSendall(co *Co, sock *Socket, data []byte) error {
	_, err := sockSendall(co, sock, data)
	return err
}

// sockSendall is SockSendall reporting how many bytes went out, which
// SockSendfile's fallback needs to leave the file position right after a
// failure or cancellation.
func sockSendall(co *Co, sock *Socket, data []byte) (int, error) {
	const op = "sock_sendall"
	l, fd, err := sockCheck(co, sock, op)
	if err != nil {
		return 0, err
	}
	sent := 0
	for {
		n, err := unix.SendmsgN(fd, data[sent:], nil, nil, unix.MSG_NOSIGNAL)
		switch err {
		case nil:
			sent += n
			if sent == len(data) {
				return sent, nil
			}
			continue
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if fd, err = l.waitSock(co, sock, fd, sdk.Write, op); err != nil {
				return sent, err
			}
			continue
		}
		return sent, sockErr("write", "send", sock, sock.RemoteAddr(), err)
	}
}

// SockSendto sends one datagram to addr and returns the bytes sent
// (asyncio: loop.sock_sendto). addr may be nil on a connected socket.
func SockSendto(co *Co, sock *Socket, data []byte, addr net.Addr) (int, error) {
	const op = "sock_sendto"
	l, fd, err := sockCheck(co, sock, op)
	if err != nil {
		return 0, err
	}
	var sa unix.Sockaddr
	if addr != nil {
		if sa, err = addrToSockaddr(sock.family, addr); err != nil {
			return 0, fmt.Errorf("%s %v: %w", op, addr, err)
		}
	}
	for {
		n, err := unix.SendmsgN(fd, data, nil, sa, unix.MSG_NOSIGNAL)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if fd, err = l.waitSock(co, sock, fd, sdk.Write, op); err != nil {
				return 0, err
			}
			continue
		}
		return 0, sockErr("write", "sendto", sock, addr, err)
	}
}

// SockConnect connects sock to address (asyncio: loop.sock_connect): a
// "host:port" for IP sockets and a path (or "@name" for the abstract
// namespace) for Unix ones. A numeric host is used as it is; a name is
// resolved with Getaddrinfo for the socket's family and type, and the first
// address is tried, as asyncio does.
func SockConnect(co *Co, sock *Socket, address string) error {
	const op = "sock_connect"
	l, _, err := sockCheck(co, sock, op)
	if err != nil {
		return err
	}
	addr, err := sockResolve(co, sock, address)
	if err != nil {
		return fmt.Errorf("%s %q: %w", op, address, err)
	}
	sa, err := addrToSockaddr(sock.family, addr)
	if err != nil {
		return fmt.Errorf("%s %v: %w", op, addr, err)
	}
	for {
		err := sock.connectNB(sa)
		switch err {
		case nil, unix.EISCONN:
			return nil
		case unix.EINPROGRESS, unix.EALREADY:
			fd, ferr := sock.sysfd(op)
			if ferr != nil {
				return ferr
			}
			if err := l.waitFD(co, fd, sdk.Write, op); err != nil {
				return err
			}
			if err := sock.connectResult(); err != nil {
				return sockErr("dial", "connect", sock, addr, err)
			}
			return nil
		case unix.EAGAIN:
			// A Unix listener's backlog is full: nothing is in progress, so
			// wait for the socket to be writable and try again.
			fd, ferr := sock.sysfd(op)
			if ferr != nil {
				return ferr
			}
			if err := l.waitFD(co, fd, sdk.Write, op); err != nil {
				return err
			}
			continue
		}
		return sockErr("dial", "connect", sock, addr, err)
	}
}

// sockResolve turns a sock_connect address into a net.Addr for sock,
// looking the host up only when it is not numeric.
func sockResolve(co *Co, sock *Socket, address string) (net.Addr, error) {
	if sock.family == unix.AF_UNIX {
		return &net.UnixAddr{Name: address, Net: netName(sock.family, sock.sotype)}, nil
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	mk := func(ap netip.AddrPort) net.Addr {
		if sock.sotype == unix.SOCK_DGRAM {
			return net.UDPAddrFromAddrPort(ap)
		}
		return net.TCPAddrFromAddrPort(ap)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if p, err := strconv.ParseUint(port, 10, 16); err == nil {
			return mk(netip.AddrPortFrom(a, uint16(p))), nil
		}
	}
	ai, err := resolve(co, host, port, sdk.AddrinfoHints{Family: sock.family, SockType: sock.sotype, Protocol: sock.proto})
	if err != nil {
		return nil, err
	}
	return mk(ai[0].Addr), nil
}

// SockAccept accepts a connection on a listening socket and returns the new
// socket, non-blocking and close-on-exec, and the peer's address (asyncio:
// loop.sock_accept).
func SockAccept(co *Co, sock *Socket) (*Socket, net.Addr, error) {
	const op = "sock_accept"
	l, fd, err := sockCheck(co, sock, op)
	if err != nil {
		return nil, nil, err
	}
	for {
		ns, addr, err := sock.acceptNB()
		switch err {
		case nil:
			return ns, addr, nil
		case unix.EAGAIN:
			if fd, err = l.waitSock(co, sock, fd, sdk.Read, op); err != nil {
				return nil, nil, err
			}
			continue
		}
		if errors.Is(err, ErrSocketClosed) {
			return nil, nil, err
		}
		return nil, nil, &net.OpError{Op: "accept", Net: netName(sock.family, sock.sotype), Addr: sock.LocalAddr(), Err: os.NewSyscallError("accept4", err)}
	}
}
