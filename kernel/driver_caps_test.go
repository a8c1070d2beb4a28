package kernel_test

import (
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/driver/readiness"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// lacking is a driver without some optional operations: the readiness
// driver with capabilities taken away, as a completion driver without a
// poll operation would be.
type lacking struct {
	sdk.Driver
	without []string
}

func (d lacking) Capabilities() sdk.DriverCapabilities {
	c := d.Driver.Capabilities()
	c.Name = "lacking"
	c.Ops = slices.DeleteFunc(slices.Clone(c.Ops), func(op string) bool { return slices.Contains(d.without, op) })
	return c
}

func newLacking(t testing.TB, without ...string) *kernel.Loop {
	t.Helper()
	sel, err := selector.NewEpoll()
	require.NoError(t, err)
	l := kernel.NewOnDriver(lacking{readiness.New(sel), without})
	t.Cleanup(func() { l.Close() })
	return l
}

// TestAddReaderNeedsWatchCapability: a driver without descriptor watching
// refuses AddReader and AddWriter with an error that names the capability,
// as Twisted's reactors without IReactorFDSet do.
func TestAddReaderNeedsWatchCapability(t *testing.T) {
	l := newLacking(t, sdk.CapWatch)
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	for name, add := range map[string]func(int, func()) error{"AddReader": l.AddReader, "AddWriter": l.AddWriter} {
		err := add(p[0], func() {})
		require.ErrorIs(t, err, sdk.ErrUnsupported, name)
		require.ErrorContains(t, err, `capability "watch"`, name)
	}
	removed, err := l.RemoveReader(p[0])
	require.NoError(t, err)
	require.False(t, removed, "a refused reader is not registered")
}

// TestSendfileNeedsCapability: without the sendfile capability the kernel
// reports zero-copy sendfile unavailable, naming the capability, and the
// fallback still sends the file.
func TestSendfileNeedsCapability(t *testing.T) {
	l := newLacking(t, sdk.CapSendfile)
	a, b := socketPair(t)
	f, err := os.CreateTemp(t.TempDir(), "sendfile")
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteString("hello, sendfile")
	require.NoError(t, err)

	task, err := kernel.CreateTask(l, func(co *kernel.Co) (string, error) {
		if _, err := kernel.SockSendfile(co, a, f, 0, 0, false); err == nil {
			t.Error("SockSendfile without fallback succeeded on a driver without sendfile")
		} else {
			require.ErrorIs(t, err, kernel.ErrSendfileNotAvailable)
			require.ErrorContains(t, err, `capability "sendfile"`)
		}
		n, err := kernel.SockSendfile(co, a, f, 0, 0, true)
		if err != nil {
			return "", err
		}
		got, err := kernel.SockRecv(co, b, int(n))
		return string(got), err
	})
	require.NoError(t, err)
	require.NoError(t, l.RunUntilComplete(task))
	got, _ := task.Result()
	require.Equal(t, "hello, sendfile", got)
}

func socketPair(t *testing.T) (*kernel.Socket, *kernel.Socket) {
	t.Helper()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	a, err := kernel.SocketFromFD(p[0])
	require.NoError(t, err)
	b, err := kernel.SocketFromFD(p[1])
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}
