// Package rawsys holds the system calls both I/O drivers make themselves
// (driver/readiness for every operation, driver/completion for its Try
// operations and what a poll completion drives), written once: each goes
// through unix.Syscall directly so that none allocates (the wrappers in
// x/sys convert addresses to and from unix.Sockaddr values on the heap),
// and EINTR is retried everywhere.
//
// It imports only x/sys and the sdk's address type.
package rawsys

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// Err is e as an error, nil for 0 (an Errno of 0 is a non-nil error).
func Err(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// Read reads into b.
func Read(fd int, b []byte) (int, error) {
	for {
		n, _, e := unix.Syscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

// RecvFrom receives one datagram into b and its sender into from.
func RecvFrom(fd int, b []byte, from *sdk.SockAddr) (int, error) {
	for {
		from.Len = unix.SizeofSockaddrAny
		n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&from.Raw)), uintptr(unsafe.Pointer(&from.Len)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			from.Len = 0
			return 0, e
		}
		return int(n), nil
	}
}

// SendTo sends one datagram to to (nil or empty: the connected peer);
// MSG_NOSIGNAL turns a SIGPIPE into EPIPE.
func SendTo(fd int, b []byte, to *sdk.SockAddr) error {
	var p, n uintptr
	if to != nil && to.Len > 0 {
		p, n = uintptr(unsafe.Pointer(&to.Raw)), uintptr(to.Len)
	}
	for {
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
			unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, p, n)
		if e == unix.EINTR {
			continue
		}
		return Err(e)
	}
}

// Sendfile moves up to count bytes from file at *off to the socket fd,
// advancing *off.
func Sendfile(fd, file int, off *int64, count int) (int, error) {
	for {
		n, err := unix.Sendfile(fd, file, off, count)
		if err == unix.EINTR {
			continue
		}
		return max(n, 0), err
	}
}
