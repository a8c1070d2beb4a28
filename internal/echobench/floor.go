package echobench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/yield"
)

// ServeFloor is the floor: the least work an echo server can do per event,
// on raw system calls with no loop kernel, no callbacks and no buffering
// beyond what a partial write forces. One level-triggered epoll, one read
// and one write per readiness event. It is the yardstick the CPU
// targets are stated against.
//
// It must not pay for the Go runtime what a Go event loop need not. A
// goroutine that only ever blocks in system calls is never scheduled, and
// after 10 ms sysmon takes it for a hog and retakes its P from every system
// call it catches in progress: a futex handoff, a P to win back, sysmon
// polling every 20 µs. The loop kernel and the data plane avoid that by
// yielding every few milliseconds (internal/yield); a floor without the yield paid 0.05–0.09 futex, 0.05–0.09
// nanosleep and 0.15–0.29 context switches per request for it and was not a
// floor (bench/README.md). So it yields the same way, and it runs on an
// ordinary goroutine, not a locked thread, because a locked goroutine's
// yield is a handoff between threads.
func ServeFloor(addr string, listening func(net.Addr)) error {
	ln, sa, err := listenRaw(addr)
	if err != nil {
		return err
	}
	defer unix.Close(ln)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("floor: epoll_create1: %w", err)
	}
	defer unix.Close(ep)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, ln, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ln)}); err != nil {
		return fmt.Errorf("floor: epoll_ctl listener: %w", err)
	}
	listening(sa)
	// pending holds what a partial write left, per descriptor.
	pending := map[int][]byte{}
	buf := make([]byte, 256*1024)
	events := make([]unix.EpollEvent, 256)
	var y yield.Ticker // the same heuristic as the loop's
	for {
		n, err := unix.EpollWait(ep, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("floor: epoll_wait: %w", err)
		}
		y.TickClock()
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == ln {
				for {
					c, _, err := unix.Accept4(ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
					if err != nil {
						break
					}
					unix.SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
					unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, c, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(c)})
				}
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 {
				p := pending[fd]
				w, err := unix.Write(fd, p)
				if err != nil && err != unix.EAGAIN {
					closeConn(ep, fd, pending)
					continue
				}
				if w == len(p) {
					delete(pending, fd)
					unix.EpollCtl(ep, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
				} else if w > 0 {
					pending[fd] = p[w:]
				}
				continue
			}
			r, err := unix.Read(fd, buf)
			if err == unix.EAGAIN {
				continue
			}
			if err != nil || r == 0 {
				closeConn(ep, fd, pending)
				continue
			}
			w, err := unix.Write(fd, buf[:r])
			if err == unix.EAGAIN {
				w, err = 0, nil
			}
			if err != nil {
				closeConn(ep, fd, pending)
				continue
			}
			if w < r {
				// The peer is slow: keep the rest and stop reading until it
				// is written, so memory stays bounded.
				pending[fd] = append([]byte(nil), buf[w:r]...)
				unix.EpollCtl(ep, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT, Fd: int32(fd)})
			}
		}
	}
}

func closeConn(ep, fd int, pending map[int][]byte) {
	unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, fd, nil)
	unix.Close(fd)
	delete(pending, fd)
}

// listenRaw opens a non-blocking TCP listener on a host:port address.
func listenRaw(addr string) (int, net.Addr, error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return -1, nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	family, sa := sockaddrOf(ta)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("listen %s: socket: %w", addr, err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("listen %s: bind: %w", addr, err)
	}
	if err := unix.Listen(fd, 1024); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("listen %s: getsockname: %w", addr, err)
	}
	switch s := got.(type) {
	case *unix.SockaddrInet4:
		return fd, &net.TCPAddr{IP: net.IP(s.Addr[:]), Port: s.Port}, nil
	case *unix.SockaddrInet6:
		return fd, &net.TCPAddr{IP: net.IP(s.Addr[:]), Port: s.Port}, nil
	}
	return fd, ta, nil
}

// sockaddrOf converts a TCP address for the raw socket calls; a nil IP is
// the IPv4 wildcard.
func sockaddrOf(ta *net.TCPAddr) (family int, sa unix.Sockaddr) {
	if ip4 := ta.IP.To4(); ip4 != nil || ta.IP == nil {
		s := &unix.SockaddrInet4{Port: ta.Port}
		if ip4 != nil {
			copy(s.Addr[:], ip4)
		}
		return unix.AF_INET, s
	}
	s := &unix.SockaddrInet6{Port: ta.Port}
	copy(s.Addr[:], ta.IP.To16())
	return unix.AF_INET6, s
}

// ServeGoNet is the Go reference: net.Listen and a goroutine per
// connection copying through a 64 KiB buffer, the way a Go server is
// usually written.
func ServeGoNet(addr string, listening func(net.Addr)) error {
	return ServeGoNetTLS(addr, nil, listening)
}

// ServeGoNetTLS is ServeGoNet over crypto/tls when cfg is set: Go's own TLS
// server, a goroutine per connection, the peer bench echo --tls measures
// against.
func ServeGoNetTLS(addr string, cfg *tls.Config, listening func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("go-net: %w", err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	listening(ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("go-net: accept: %w", err)
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 64*1024)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}
