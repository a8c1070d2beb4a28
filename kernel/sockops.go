package kernel

import (
	"errors"
	"fmt"
	"io"
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
// Each one is written on the I/O seam: it first tries its operation at once
// (TryRead, TryWrite, ...), so that an operation that can complete now
// never touches the back-end, and only when the socket would block submits
// the operation and suspends the task until it completes. A task cancelled
// while it waits cancels the operation, so a descriptor is never left armed
// on behalf of a coroutine that has gone. Only one operation per direction
// may be pending on a descriptor: a second (or one on a descriptor a
// transport is reading or writing, or that AddReader or AddWriter watches in
// that direction) fails with ErrFDBusy.

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
	if err := l.ensureNoTransport(op, fd); err != nil {
		return nil, -1, err
	}
	return l, fd, nil
}

// sockIO is sockCheck plus a hold on the socket's descriptor in the I/O
// driver for the length of one call; the caller releases it.
func sockIO(co *Co, sock *Socket, op string) (*Loop, *ioRef, error) {
	l, fd, err := sockCheck(co, sock, op)
	if err != nil {
		return nil, nil, err
	}
	r, err := l.acquireIO(fd)
	if err != nil {
		return nil, nil, busyErr(op, fd, err)
	}
	return l, r, nil
}

// copyIn returns how many bytes of buf data holds, copying them in when a
// driver delivered them in a buffer of its own.
func copyIn(buf, data []byte) int {
	if len(data) == 0 || &data[0] == &buf[0] {
		return len(data)
	}
	return copy(buf, data)
}

// sockErr wraps a failed system call the way package net does, so callers
// can match the errno with errors.Is and read the addresses with errors.As.
func sockErr(op, call string, sock *Socket, addr net.Addr, err error) error {
	if errors.Is(err, ErrSocketClosed) || errors.Is(err, sdk.ErrCanceled) {
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
	l, r, err := sockIO(co, sock, op)
	if err != nil {
		return 0, err
	}
	defer l.releaseIO(r)
	n, err := r.f.TryRead(buf)
	if errors.Is(err, sdk.ErrWouldBlock) {
		w := l.getWait(r, sdk.Read, buf)
		res, werr := w.wait(co, sdk.Read, op, r.f.ReadStart(w.allocFn, w.readFn))
		if werr != nil {
			return 0, werr
		}
		n, err = res.n, res.err
	}
	switch {
	case err == io.EOF:
		return 0, nil
	case err != nil:
		return 0, sockErr("read", "recv", sock, sock.RemoteAddr(), err)
	}
	return n, nil
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
	l, r, err := sockIO(co, sock, op)
	if err != nil {
		return 0, nil, err
	}
	defer l.releaseIO(r)
	var from sdk.SockAddr
	n, err := r.f.TryRecvFrom(buf, &from)
	if errors.Is(err, sdk.ErrWouldBlock) {
		w := l.getWait(r, sdk.Read, buf)
		res, werr := w.wait(co, sdk.Read, op, r.f.RecvFromStart(w.allocFn, w.recvFn))
		if werr != nil {
			return 0, nil, werr
		}
		n, err, from = res.n, res.err, res.from
	}
	if err != nil {
		return 0, nil, sockErr("read", "recvfrom", sock, nil, err)
	}
	return n, rawToAddr(&from, sock.sotype), nil
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
	l, r, err := sockIO(co, sock, op)
	if err != nil {
		return 0, err
	}
	defer l.releaseIO(r)
	sent := 0
	for {
		n, err := l.tryWrite(r, data[sent:])
		if errors.Is(err, sdk.ErrWouldBlock) {
			w := l.getWait(r, sdk.Write, nil)
			w.bufs[0] = data[sent:]
			res, werr := w.wait(co, sdk.Write, op, r.f.Write(w.bufs[:], w.nFn))
			if werr != nil {
				return sent, werr
			}
			n, err = res.n, res.err
		}
		if err != nil {
			return sent, sockErr("write", "send", sock, sock.RemoteAddr(), err)
		}
		sent += n
		if sent == len(data) {
			return sent, nil
		}
	}
}

// SockSendto sends one datagram to addr and returns the bytes sent
// (asyncio: loop.sock_sendto). addr may be nil on a connected socket.
func SockSendto(co *Co, sock *Socket, data []byte, addr net.Addr) (int, error) {
	const op = "sock_sendto"
	l, r, err := sockIO(co, sock, op)
	if err != nil {
		return 0, err
	}
	defer l.releaseIO(r)
	w := l.getWait(r, sdk.Write, nil)
	var to *sdk.SockAddr
	if addr != nil {
		sa, err := addrToSockaddr(sock.family, addr)
		if err == nil {
			w.to, err = toSockAddr(sa)
		}
		if err != nil {
			w.put()
			return 0, fmt.Errorf("%s %v: %w", op, addr, err)
		}
		to = &w.to
	}
	err = r.f.TrySendTo(data, to)
	if !errors.Is(err, sdk.ErrWouldBlock) {
		w.put()
	} else {
		res, werr := w.wait(co, sdk.Write, op, r.f.SendTo(data, to, w.errFn))
		if werr != nil {
			return 0, werr
		}
		err = res.err
	}
	if err != nil {
		return 0, sockErr("write", "sendto", sock, addr, err)
	}
	return len(data), nil
}

// SockConnect connects sock to address (asyncio: loop.sock_connect): a
// "host:port" for IP sockets and a path (or "@name" for the abstract
// namespace) for Unix ones. A numeric host is used as it is; a name is
// resolved with Getaddrinfo for the socket's family and type, and the first
// address is tried, as asyncio does.
func SockConnect(co *Co, sock *Socket, address string) error {
	const op = "sock_connect"
	if _, _, err := sockCheck(co, sock, op); err != nil {
		return err
	}
	addr, err := sockResolve(co, sock, address)
	if err != nil {
		return fmt.Errorf("%s %q: %w", op, address, err)
	}
	usa, err := addrToSockaddr(sock.family, addr)
	if err != nil {
		return fmt.Errorf("%s %v: %w", op, addr, err)
	}
	sa, err := toSockAddr(usa)
	if err != nil {
		return fmt.Errorf("%s %v: %w", op, addr, err)
	}
	l, r, err := sockIO(co, sock, op)
	if err != nil {
		return err
	}
	defer l.releaseIO(r)
	w := l.getWait(r, sdk.Write, nil)
	w.to = sa
	res, err := w.wait(co, sdk.Write, op, r.f.Connect(&w.to, w.errFn))
	if err != nil {
		return err
	}
	if res.err != nil && res.err != unix.EISCONN {
		return sockErr("dial", "connect", sock, addr, res.err)
	}
	return nil
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
	l, r, err := sockIO(co, sock, op)
	if err != nil {
		return nil, nil, err
	}
	defer l.releaseIO(r)
	w := l.getWait(r, sdk.Read, nil)
	res, err := w.wait(co, sdk.Read, op, r.f.Accept(1, w.acceptFn))
	if err != nil {
		return nil, nil, err
	}
	if res.err != nil {
		return nil, nil, &net.OpError{Op: "accept", Net: netName(sock.family, sock.sotype), Addr: sock.LocalAddr(), Err: os.NewSyscallError("accept4", res.err)}
	}
	return newSocket(res.fd, sock.family, sock.sotype, sock.proto), rawToAddr(&res.from, sock.sotype), nil
}
