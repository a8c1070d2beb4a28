package rawsys_test

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/rawsys"
	"github.com/loopkernel/loopkernel/sdk"
)

// A datagram over a socket pair, sent and received with the drivers' own
// system calls.
func Example() {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		panic(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	fmt.Println(rawsys.SendTo(fds[0], []byte("ping"), nil))
	var from sdk.SockAddr
	b := make([]byte, 16)
	n, err := rawsys.RecvFrom(fds[1], b, &from)
	fmt.Println(string(b[:n]), err)
	_, err = rawsys.Read(fds[1], b) // nothing left: EAGAIN on a non-blocking socket
	fmt.Println(err == unix.EAGAIN)
	fmt.Println(rawsys.Err(0))
	// Output:
	// <nil>
	// ping <nil>
	// true
	// <nil>
}
