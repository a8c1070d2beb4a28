package readiness

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/rawsys"
	"github.com/loopkernel/loopkernel/sdk"
)

// The system calls of the operations, made with unix.Syscall directly so
// that none of them allocates (the wrappers in x/sys convert addresses to
// and from unix.Sockaddr values on the heap). EINTR is retried everywhere.

// sendNoSignal sends b on a non-blocking stream socket; MSG_NOSIGNAL turns
// the SIGPIPE of a write to a reset connection into EPIPE.
func sendNoSignal(fd int, b []byte) (int, error) {
	for {
		n, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))),
			uintptr(len(b)), unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

// fillIov points the driver's iovec scratch at up to maxIovecs of the
// non-empty bufs and returns how many it took; the caller clears them after
// its system call so sent buffers are not kept alive.
func (d *Driver) fillIov(bufs [][]byte) int {
	n := 0
	for _, b := range bufs {
		if n == maxIovecs {
			break
		}
		if len(b) == 0 {
			continue
		}
		d.iov[n].Base = &b[0]
		d.iov[n].SetLen(len(b))
		n++
	}
	return n
}

// sendBufs sends up to maxIovecs of bufs with one sendmsg through the
// driver's iovec scratch.
func (d *Driver) sendBufs(fd int, bufs [][]byte) (int, error) {
	n := d.fillIov(bufs)
	if n == 0 {
		return 0, nil
	}
	d.msg = unix.Msghdr{Iov: &d.iov[0]}
	d.msg.SetIovlen(n)
	for {
		r, _, e := unix.Syscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&d.msg)),
			unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT)
		if e == unix.EINTR {
			continue
		}
		clear(d.iov[:n]) // do not keep sent buffers alive
		if e != 0 {
			return 0, e
		}
		return int(r), nil
	}
}

// writeBufs writes up to maxIovecs of bufs to a descriptor that is not a
// socket (a pipe, a FIFO, a terminal) with one writev.
func (d *Driver) writeBufs(fd int, bufs [][]byte) (int, error) {
	n := d.fillIov(bufs)
	if n == 0 {
		return 0, nil
	}
	for {
		r, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&d.iov[0])), uintptr(n))
		if e == unix.EINTR {
			continue
		}
		clear(d.iov[:n])
		if e != 0 {
			return 0, e
		}
		return int(r), nil
	}
}

// accept takes one connection, non-blocking and close-on-exec, with its
// peer's address. A connection reset while it waited in the backlog is not
// the listener's failure and is skipped.
func accept(fd int, peer *sdk.SockAddr) (int, error) {
	for {
		peer.Len = unix.SizeofSockaddrAny
		nfd, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&peer.Raw)), uintptr(unsafe.Pointer(&peer.Len)),
			unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		if e == unix.EINTR || e == unix.ECONNABORTED {
			continue
		}
		if e != 0 {
			peer.Len = 0
			return -1, e
		}
		return int(nfd), nil
	}
}

// connectRaw starts a non-blocking connect.
func connectRaw(fd int, sa *sdk.SockAddr) error {
	_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa.Raw)), uintptr(sa.Len))
	return rawsys.Err(e)
}

// soError reads the outcome of a connect that was in progress.
func soError(fd int) error {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	return rawsys.Err(syscall.Errno(v))
}
