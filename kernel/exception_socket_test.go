package kernel

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The default exception handler names the socket concerned by its
// addresses, so that an "accept out of system resource" report says which
// listener it is about (issue 13: it used to print the type *kernel.Socket).
func TestErrorContextLogsSocketAddress(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	s := newSocket(fd, unix.AF_INET, unix.SOCK_STREAM, 0)
	defer s.Close()
	require.NoError(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, unix.Listen(fd, 1))

	args := ErrorContext{Message: "accept failed", Socket: s}.logArgs()
	var got string
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] == "socket" {
			got, _ = args[i+1].(string)
		}
	}
	require.True(t, strings.Contains(got, s.LocalAddr().String()), "socket field %q lacks the address %v", got, s.LocalAddr())
}
