package dataplane

import (
	"context"
	"github.com/stretchr/testify/require"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// startFakeHost runs a real Serve and hands its peer end to the test as a
// fake host that sends frames by hand.
func startFakeHost(t *testing.T) (*fakePlugin, *plugin) {
	t.Helper()
	host, p := startPlugin(t, nil)
	t.Cleanup(func() { host.Close() })
	return newFake(host), p
}

func (f *fakePlugin) hello(t *testing.T) {
	t.Helper()
	f.send(t, encHeader(tHello, 0, 0, 0))
	b := f.read(t)
	fr, err := decodePluginFrame(b, 0, 0)
	require.NoError(t, err)
	require.Equal(t, tHelloReply, fr.typ)
}

// expectViolation checks Serve reported EPROTO to the host and returned a
// protocol error.
func expectViolation(t *testing.T, f *fakePlugin, p *plugin) {
	t.Helper()
	b := f.read(t)
	fr, err := decodePluginFrame(b, 0, 0)
	require.NoError(t, err)
	require.Equal(t, tError, fr.typ)
	require.Equal(t, uint32(unix.EPROTO), fr.errno)
	require.ErrorIs(t, p.wait(t), ErrProtocol)
}

func TestServeRejectsGarbage(t *testing.T) {
	cases := map[string]struct {
		hello bool
		frame []byte
		fds   int
	}{
		"request before hello":    {false, encRequest(1, 0, 0, 1), 0},
		"second hello":            {true, encHeader(tHello, 0, 0, 0), 0},
		"bad magic":               {true, append([]byte("XXXX"), encRequest(1, 0, 0, 1)[4:]...), 0},
		"reply type":              {true, encEvents(1, 0), 0},
		"fd without register":     {true, encRequest(1, 0, 0, 1, reqRec{1, opModify, sdk.Read}), 2},
		"register without fd":     {true, encRequest(1, 0, 0, 1, reqRec{1, opRegister, sdk.Read}), 0},
		"wake carrying fds":       {true, encHeader(tWake, 0, 0, 0), 1},
		"interest out of range":   {true, encRequest(1, 0, 0, 1, reqRec{1, opModify, 1 << 9}), 0},
		"oversized frame":         {true, make([]byte, maxFrame+1), 0},
		"zero-filled small frame": {true, make([]byte, 3), 0},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f, p := startFakeHost(t)
			if tc.hello {
				f.hello(t)
			}
			before := openFDs(t)
			var fds []int
			for range tc.fds {
				a, _ := pair(t)
				fds = append(fds, a)
			}
			f.send(t, tc.frame, fds...)
			expectViolation(t, f, p)
			require.Equal(t, before+2*tc.fds, openFDs(t), "descriptors that came with garbage are closed")
		})
	}
}

func TestServeRequestWhileWaiting(t *testing.T) {
	f, p := startFakeHost(t)
	f.hello(t)
	f.send(t, encRequest(1, 0, -1, 4))
	f.send(t, encRequest(2, 0, -1, 4))
	expectViolation(t, f, p)
}

func TestServeWakeBeforeHelloAndDuringWait(t *testing.T) {
	f, p := startFakeHost(t)
	f.send(t, encHeader(tWake, 0, 0, 0))
	f.hello(t)
	// The wake that came before hello makes the first (indefinite) wait
	// poll; were it lost, the read below would block until the test times out.
	f.send(t, encRequest(1, 0, -1, 4))
	fr, err := decodePluginFrame(f.read(t), 0, 4)
	require.NoError(t, err)
	require.Equal(t, uint32(1), fr.seq)
	require.Equal(t, uint32(0), fr.count)
	// A wake after the request ends the wait with the woken flag, whether
	// it lands before the real wait starts or during it.
	f.send(t, encRequest(2, 0, -1, 4))
	time.Sleep(5 * time.Millisecond)
	f.send(t, encHeader(tWake, 0, 0, 0))
	fr, err = decodePluginFrame(f.read(t), 0, 4)
	require.NoError(t, err)
	require.Equal(t, fWoken, fr.flags)
	require.Equal(t, uint32(2), fr.seq)
	f.send(t, encHeader(tGoodbye, 0, 0, 0))
	require.NoError(t, p.wait(t))
}

func TestServeErrorRecords(t *testing.T) {
	f, p := startFakeHost(t)
	f.hello(t)
	a, _ := pair(t)
	b, _ := pair(t)
	before := openFDs(t)
	t1, t2 := sdk.MakeToken(1, 1), sdk.MakeToken(2, 1)
	// Registering t1 twice: both copies are dropped and closed.
	f.send(t, encRequest(1, 0, 0, 4,
		reqRec{t1, opRegister, sdk.Read},
		reqRec{t1, opRegister, sdk.Read},
		reqRec{t2, opModify, sdk.Read},
		reqRec{t2, opUnregister, 0}), a, b)
	fr, err := decodePluginFrame(f.read(t), 0, 4)
	require.NoError(t, err)
	require.Equal(t, uint32(3), fr.count)
	want := []evRec{{t1, 0, uint32(unix.EEXIST)}, {t2, 0, uint32(unix.ENOENT)}, {t2, 0, uint32(unix.ENOENT)}}
	for i, w := range want {
		require.Equal(t, w, evRec{recToken(fr.recs, i), recEvents(fr.recs, i), recErrno(fr.recs, i)})
	}
	require.Equal(t, before, openFDs(t), "after an error record the plugin holds nothing for the token")
	f.send(t, encHeader(tGoodbye, 0, 0, 0))
	require.NoError(t, p.wait(t))
	require.Equal(t, before, openFDs(t), "Serve closes its copies on goodbye")
}

func TestServeCancelledBeforeStart(t *testing.T) {
	host, pconn, err := Socketpair()
	require.NoError(t, err)
	defer host.Close()
	defer pconn.Close()
	sel, err := newTestEpoll()
	require.NoError(t, err)
	defer sel.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, Serve(ctx, pconn, sel, hclog.NewNullLogger()), context.Canceled)
}

func TestSocketpairCloexec(t *testing.T) {
	host, pconn, err := Socketpair()
	require.NoError(t, err)
	defer host.Close()
	defer pconn.Close()
	for _, f := range []*os.File{host, pconn} {
		flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
		require.NoError(t, err)
		require.True(t, flags&unix.FD_CLOEXEC != 0, "%s is close-on-exec", f.Name())
		typ, err := unix.GetsockoptInt(int(f.Fd()), unix.SOL_SOCKET, unix.SO_TYPE)
		require.NoError(t, err)
		require.Equal(t, unix.SOCK_SEQPACKET, typ)
	}
}

func TestServeRefusesOtherVersion(t *testing.T) {
	f, p := startFakeHost(t)
	hello := encHeader(tHello, 0, 0, 0)
	hello[4] = 2
	f.send(t, hello)
	fr, err := decodePluginFrame(f.read(t), 0, 0)
	require.NoError(t, err)
	require.Equal(t, tError, fr.typ)
	require.Equal(t, uint32(unix.EPROTONOSUPPORT), fr.errno)
	require.ErrorIs(t, p.wait(t), ErrProtocol)
}
