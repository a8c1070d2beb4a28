package completion

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// The system calls the driver makes itself: the Try operations and the
// operations driven by a poll completion. They are made with unix.Syscall
// directly so that none allocates; EINTR is retried.

// peer reads an accepted connection's peer address (a multishot accept
// has no per-connection address buffer); Len 0 if it is already gone.
func peer(fd int, sa *sdk.SockAddr) {
	sa.Len = unix.SizeofSockaddrAny
	_, _, e := unix.RawSyscall(unix.SYS_GETPEERNAME, uintptr(fd), uintptr(unsafe.Pointer(&sa.Raw)), uintptr(unsafe.Pointer(&sa.Len)))
	if e != 0 {
		sa.Len = 0
	}
}
