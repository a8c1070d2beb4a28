package kernel

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

func TestSocketBasics(t *testing.T) {
	s, err := NewSocket(unix.AF_INET, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, unix.AF_INET, s.Family())
	assert.Equal(t, unix.SOCK_STREAM, s.Type())
	assert.False(t, s.Blocking())

	fl, err := unix.FcntlInt(uintptr(s.Fd()), unix.F_GETFL, 0)
	require.NoError(t, err)
	assert.NotZero(t, fl&unix.O_NONBLOCK, "kernel sockets start non-blocking")
	fdfl, err := unix.FcntlInt(uintptr(s.Fd()), unix.F_GETFD, 0)
	require.NoError(t, err)
	assert.NotZero(t, fdfl&unix.FD_CLOEXEC, "kernel sockets are close-on-exec")

	require.NoError(t, s.Bind(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}))
	require.NoError(t, s.Listen(0))
	la, ok := s.LocalAddr().(*net.TCPAddr)
	require.True(t, ok, "%T", s.LocalAddr())
	assert.True(t, la.IP.Equal(net.IPv4(127, 0, 0, 1)))
	assert.NotZero(t, la.Port)
	assert.Nil(t, s.RemoteAddr())

	require.NoError(t, s.SetBlocking(true))
	assert.True(t, s.Blocking())
	fl, err = unix.FcntlInt(uintptr(s.Fd()), unix.F_GETFL, 0)
	require.NoError(t, err)
	assert.Zero(t, fl&unix.O_NONBLOCK)

	var sc syscall.Conn = s
	rc, err := sc.SyscallConn()
	require.NoError(t, err)
	var seen uintptr
	require.NoError(t, rc.Control(func(fd uintptr) { seen = fd }))
	assert.Equal(t, uintptr(s.Fd()), seen)

	require.NoError(t, s.Close())
	assert.Equal(t, -1, s.Fd())
	assert.NoError(t, s.Close(), "second close is a no-op")
	assert.ErrorIs(t, s.Bind(&net.TCPAddr{}), ErrSocketClosed)
	assert.ErrorIs(t, rc.Control(func(uintptr) {}), ErrSocketClosed)
}

func TestSocketFromFD(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0) // blocking, inheritable
	require.NoError(t, err)
	s, err := SocketFromFD(fd)
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, unix.AF_INET, s.Family())
	assert.Equal(t, unix.SOCK_DGRAM, s.Type())
	assert.Equal(t, unix.IPPROTO_UDP, s.Proto())
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	require.NoError(t, err)
	assert.NotZero(t, fl&unix.O_NONBLOCK)

	f, err := os.CreateTemp(t.TempDir(), "notasocket")
	require.NoError(t, err)
	defer f.Close()
	_, err = SocketFromFD(int(f.Fd()))
	assert.ErrorIs(t, err, unix.ENOTSOCK)
	_, err = SocketFromFD(-1)
	assert.ErrorIs(t, err, ErrInvalidFD)
}

func TestSocketUnixAddrs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	abstract := fmt.Sprintf("@loopkernel-test-%d", os.Getpid())
	for _, name := range []string{path, abstract, "\x00" + abstract[1:] + "-nul"} {
		s, err := NewSocket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		require.NoError(t, err)
		require.NoError(t, s.Bind(&net.UnixAddr{Name: name, Net: "unix"}), name)
		la := s.LocalAddr().(*net.UnixAddr)
		want := name
		if name[0] == 0 {
			want = "@" + name[1:]
		}
		assert.Equal(t, want, la.Name)
		s.Close()
	}
	s, err := NewSocket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, &net.UnixAddr{Name: "", Net: "unixgram"}, s.LocalAddr(), "unnamed socket")
	long := make([]byte, 200)
	for i := range long {
		long[i] = 'x'
	}
	assert.ErrorIs(t, s.Bind(&net.UnixAddr{Name: string(long)}), unix.ENAMETOOLONG)
}

func TestAddrConversions(t *testing.T) {
	cases := []struct {
		family int
		addr   net.Addr
		want   unix.Sockaddr
		err    error
	}{
		{0, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}, &unix.SockaddrInet4{Port: 80, Addr: [4]byte{127, 0, 0, 1}}, nil},
		{0, &net.UDPAddr{IP: net.IPv6loopback, Port: 53}, &unix.SockaddrInet6{Port: 53, Addr: [16]byte{15: 1}}, nil},
		{unix.AF_INET6, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
			&unix.SockaddrInet6{Port: 1, Addr: [16]byte{10: 0xff, 11: 0xff, 12: 127, 15: 1}}, nil},
		{unix.AF_INET, &net.TCPAddr{IP: net.IPv6loopback}, nil, unix.EAFNOSUPPORT},
		{0, &net.TCPAddr{Port: 70000}, nil, unix.EINVAL},
		{unix.AF_INET, &net.UnixAddr{Name: "/x"}, nil, unix.EAFNOSUPPORT},
		{0, nil, nil, unix.EINVAL},
		{0, &net.UnixAddr{Name: "@a"}, &unix.SockaddrUnix{Name: "@a"}, nil},
		{0, &net.TCPAddr{IP: net.IPv6loopback, Zone: "1"}, &unix.SockaddrInet6{Addr: [16]byte{15: 1}, ZoneId: 1}, nil},
	}
	for _, c := range cases {
		sa, err := addrToSockaddr(c.family, c.addr)
		if c.err != nil {
			assert.ErrorIs(t, err, c.err, "%v", c.addr)
			continue
		}
		require.NoError(t, err, "%v", c.addr)
		assert.Equal(t, c.want, sa, "%v", c.addr)
	}
	assert.Equal(t, &net.UDPAddr{IP: net.IP{1, 2, 3, 4}, Port: 9},
		sockaddrToAddr(&unix.SockaddrInet4{Port: 9, Addr: [4]byte{1, 2, 3, 4}}, unix.SOCK_DGRAM))
	assert.Equal(t, &net.TCPAddr{IP: net.IPv6loopback, Port: 9},
		sockaddrToAddr(&unix.SockaddrInet6{Port: 9, Addr: [16]byte{15: 1}}, unix.SOCK_STREAM))
	assert.Equal(t, unix.AF_INET6, addrFamily(&net.UDPAddr{IP: net.IPv6loopback}))
	assert.Equal(t, unix.AF_UNIX, addrFamily(&net.UnixAddr{Name: "x"}))
	var opErr *net.OpError
	s, err := NewSocket(unix.AF_INET, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	defer s.Close()
	err = s.Bind(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)}) // TEST-NET-1: not ours
	require.Error(t, err)
	assert.True(t, errors.As(err, &opErr))
	assert.ErrorIs(t, err, unix.EADDRNOTAVAIL)
}

// TestSocketForgottenIsClosed: a Socket dropped without Close has its
// descriptor closed by the collector, as an os.File would.
func TestSocketForgottenIsClosed(t *testing.T) {
	var st unix.Stat_t
	fd := func() int {
		s, err := NewSocket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		require.NoError(t, err)
		require.NoError(t, unix.Fstat(s.Fd(), &st))
		return s.Fd()
	}()
	closed := func() bool {
		var now unix.Stat_t
		err := unix.Fstat(fd, &now)
		return err == unix.EBADF || (err == nil && now.Ino != st.Ino) // gone, or the number reused
	}
	for i := 0; i < 50 && !closed(); i++ {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	assert.True(t, closed(), "descriptor %d of a forgotten Socket is still open", fd)

	// Detach hands the descriptor over: the collector must leave it alone.
	s, err := NewSocket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	require.NoError(t, err)
	kept := s.Detach()
	s = nil
	for range 5 {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	_, err = unix.FcntlInt(uintptr(kept), unix.F_GETFD, 0)
	assert.NoError(t, err, "a detached descriptor was closed")
	unix.Close(kept)
}

// FuzzRawAddr: whatever bytes the kernel hands back as a source address,
// converting them must not panic, and a second identical address must come
// back as the same cached value; an address converted for sending must
// read back as itself.
func FuzzRawAddr(f *testing.F) {
	f.Add([]byte{2, 0, 0x1f, 0x90, 127, 0, 0, 1}, uint8(16), []byte{127, 0, 0, 1}, uint16(8080))
	f.Add([]byte{10, 0, 0, 53}, uint8(28), []byte(net.IPv6loopback), uint16(53))
	f.Add([]byte{1, 0, 0, 'a', 'b'}, uint8(5), []byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, raw []byte, n uint8, ip []byte, port uint16) {
		var r sdk.SockAddr
		rb := unsafe.Slice((*byte)(unsafe.Pointer(&r.Raw)), unix.SizeofSockaddrAny)
		copy(rb, raw)
		r.Len = uint32(n) % (unix.SizeofSockaddrAny + 1)
		var c rawAddr
		a1 := c.fromRaw(&r, unix.SOCK_DGRAM)
		a2 := c.fromRaw(&r, unix.SOCK_DGRAM)
		if a1 != nil && a1 != a2 {
			t.Fatalf("same source bytes gave two addresses: %v, %v", a1, a2)
		}

		if len(ip) != 4 && len(ip) != 16 {
			return
		}
		want := &net.UDPAddr{IP: net.IP(ip), Port: int(port)}
		var send, recv rawAddr
		if err := send.toRaw(0, want); err != nil {
			t.Fatalf("toRaw(%v): %v", want, err)
		}
		got, ok := recv.fromRaw(&send.sa, unix.SOCK_DGRAM).(*net.UDPAddr)
		if !ok || !got.IP.Equal(want.IP) || got.Port != want.Port {
			t.Fatalf("round trip of %v gave %v", want, got)
		}
	})
}

// TestSocketRawConnReadWrite: RawConn.Read waits (off the loop) until the
// callback reports done, polling for readiness in between.
func TestSocketRawConnReadWrite(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	a, err := SocketFromFD(fds[0])
	require.NoError(t, err)
	defer a.Close()
	b, err := SocketFromFD(fds[1])
	require.NoError(t, err)
	defer b.Close()
	rc, err := a.SyscallConn()
	require.NoError(t, err)
	go func() {
		time.Sleep(10 * time.Millisecond)
		wc, _ := b.SyscallConn()
		wc.Write(func(fd uintptr) bool {
			_, err := unix.Write(int(fd), []byte("ping"))
			return err != unix.EAGAIN
		})
	}()
	calls := 0
	var got []byte
	require.NoError(t, rc.Read(func(fd uintptr) bool {
		calls++
		buf := make([]byte, 16)
		n, err := unix.Read(int(fd), buf)
		if err == unix.EAGAIN {
			return false
		}
		got = buf[:n]
		return true
	}))
	assert.Equal(t, "ping", string(got))
	assert.GreaterOrEqual(t, calls, 1)
}
