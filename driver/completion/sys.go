package completion

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// The system calls the driver makes itself: the Try operations and the
// operations driven by a poll completion. They are made with unix.Syscall
// directly so that none allocates; EINTR is retried.

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func readFD(fd int, b []byte) (int, error) {
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

func recvFrom(fd int, b []byte, from *sdk.SockAddr) (int, error) {
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

func sendTo(fd int, b []byte, to *sdk.SockAddr) error {
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
		return errnoErr(e)
	}
}

// peer reads an accepted connection's peer address (a multishot accept
// has no per-connection address buffer); Len 0 if it is already gone.
func peer(fd int, sa *sdk.SockAddr) {
	sa.Len = unix.SizeofSockaddrAny
	_, _, e := unix.RawSyscall(unix.SYS_GETPEERNAME, uintptr(fd), uintptr(unsafe.Pointer(&sa.Raw)), uintptr(unsafe.Pointer(&sa.Len)))
	if e != 0 {
		sa.Len = 0
	}
}

func sendfile(fd, file int, off *int64, count int) (int, error) {
	for {
		n, err := unix.Sendfile(fd, file, off, count)
		if err == unix.EINTR {
			continue
		}
		return max(n, 0), err
	}
}
