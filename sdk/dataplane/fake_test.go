package dataplane

import (
	"github.com/stretchr/testify/require"
	"os"
	"testing"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// fakePlugin plays the plugin end by hand, to send what a real Serve never
// would: stale events, garbage, descriptors.
type fakePlugin struct {
	conn *os.File
	s    sock
	buf  []byte
	oob  []byte
}

func newFake(conn *os.File) *fakePlugin {
	return &fakePlugin{conn: conn, s: sock{fd: int(conn.Fd())}, buf: make([]byte, maxFrame+1), oob: make([]byte, oobSpace)}
}

// newFakeClient returns a Client whose hello was answered by a fake that
// claims no capabilities.
func newFakeClient(t *testing.T) (*Client, *fakePlugin) {
	t.Helper()
	host, pconn, err := Socketpair()
	require.NoError(t, err)
	f := newFake(pconn)
	t.Cleanup(func() { pconn.Close() })
	done := make(chan struct{})
	go func() {
		defer close(done)
		if b := f.read(t); b != nil {
			f.send(t, encHelloReply("fake", 0, 0))
		}
	}()
	c, err := NewClient(host, hclog.NewNullLogger())
	require.NoError(t, err)
	<-done // the race detector cannot see ordering through the socket
	t.Cleanup(func() { c.Close() })
	return c, f
}

// read returns the next frame (nil on error), closing any descriptors.
func (f *fakePlugin) read(t testing.TB) []byte {
	n, oobn, _, err := f.s.recv(f.buf, f.oob, 0)
	if err != nil {
		t.Errorf("fake plugin read: %v", err)
		return nil
	}
	fds, _ := parseRights(f.oob[:oobn], nil)
	closeAll(fds)
	return f.buf[:n]
}

func (f *fakePlugin) send(t testing.TB, b []byte, fds ...int) {
	if err := f.s.send(b, putRights(make([]byte, oobSpace), fds), 0); err != nil {
		t.Errorf("fake plugin send: %v", err)
	}
}

// reply reads frames up to the end of a request batch and answers it.
func (f *fakePlugin) reply(t testing.TB, answer func(seq uint32) []byte) {
	for {
		b := f.read(t)
		if b == nil {
			return
		}
		if b[5] == tRequest && le.Uint16(b[6:])&fMore == 0 {
			f.send(t, answer(le.Uint32(b[12:])))
			return
		}
	}
}

// replyAsync runs reply in a goroutine; wait on the channel before the
// fake is used again (ordering through the socket is invisible to -race).
func (f *fakePlugin) replyAsync(t testing.TB, answer func(seq uint32) []byte) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.reply(t, answer)
	}()
	return done
}

// countQueued drains the frames waiting for the plugin and counts those of
// type typ.
func (f *fakePlugin) countQueued(t testing.TB, typ uint8) int {
	n := 0
	for {
		m, _, _, err := f.s.recv(f.buf, f.oob, unix.MSG_DONTWAIT)
		if err == errAgain {
			return n
		}
		require.NoError(t, err)
		if m >= headerLen && f.buf[5] == typ {
			n++
		}
	}
}

func TestStaleEventsDropped(t *testing.T) {
	c, fake := newFakeClient(t)
	a, _ := pair(t)
	b, _ := pair(t)
	live, gone := sdk.MakeToken(1, 1), sdk.MakeToken(2, 1)
	require.NoError(t, c.Register(a, live, sdk.Read))
	require.NoError(t, c.Register(b, gone, sdk.Read))
	done := fake.replyAsync(t, func(seq uint32) []byte { return encEvents(seq, 0) })
	_, err := c.Wait(make([]sdk.Event, 4), 0)
	<-done
	require.NoError(t, err)
	require.NoError(t, c.Unregister(gone))

	done = fake.replyAsync(t, func(seq uint32) []byte {
		return encEvents(seq, 0,
			evRec{gone, sdk.Read, 0},                          // unregistered since
			evRec{sdk.MakeToken(1, 0), sdk.Read, 0},           // older generation of live's slot
			evRec{live, sdk.Read | sdk.Write, 0},              // Write is outside the interest
			evRec{sdk.MakeToken(9, 9), 0, uint32(unix.EPERM)}) // error for an unknown token
	})
	evs := make([]sdk.Event, 4)
	n, err := c.Wait(evs, 0)
	<-done
	require.NoError(t, err)
	require.Equal(t, []sdk.Event{{Token: live, Events: sdk.Read}}, evs[:n])
}

func TestGarbageIsProtocolError(t *testing.T) {
	cases := map[string]func(seq uint32) []byte{
		"bad magic":       func(seq uint32) []byte { b := encEvents(seq, 0); b[0] = 'X'; return b },
		"wrong seq":       func(seq uint32) []byte { return encEvents(seq+1, 0) },
		"truncated":       func(seq uint32) []byte { return encEvents(seq, 0, evRec{1, sdk.Read, 0})[:20] },
		"hello reply":     func(seq uint32) []byte { return encHelloReply("again", 0, 0) },
		"too many events": func(seq uint32) []byte { return encEvents(seq, 0, evRec{1, 1, 0}, evRec{2, 1, 0}) },
		"random":          func(seq uint32) []byte { return []byte("hello, this is not a frame at all") },
		"plugin gives up": func(seq uint32) []byte { return encError(0, uint32(unix.EPROTO), "bad request") },
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			c, fake := newFakeClient(t)
			done := fake.replyAsync(t, answer)
			_, err := c.Wait(make([]sdk.Event, 1), 0)
			<-done
			require.ErrorIs(t, err, ErrProtocol)
		})
	}
}

func TestDescriptorsFromPluginAreClosed(t *testing.T) {
	c, fake := newFakeClient(t)
	var p [2]int
	require.NoError(t, unix.Pipe2(p[:], unix.O_CLOEXEC))
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	before := openFDs(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			b := fake.read(t)
			if b == nil {
				return
			}
			if b[5] == tRequest {
				// A valid reply, but plugins never send descriptors.
				fake.send(t, encEvents(le.Uint32(b[12:]), 0), p[0], p[1])
				return
			}
		}
	}()
	_, err := c.Wait(make([]sdk.Event, 1), 0)
	require.ErrorIs(t, err, ErrProtocol)
	<-done
	require.Equal(t, before, openFDs(t), "received descriptors are closed")
}

func TestPluginErrorFrame(t *testing.T) {
	c, fake := newFakeClient(t)
	done := fake.replyAsync(t, func(seq uint32) []byte { return encError(seq, uint32(unix.ENOMEM), "epoll_wait failed") })
	_, err := c.Wait(make([]sdk.Event, 1), 0)
	<-done
	require.ErrorIs(t, err, unix.ENOMEM)
	require.ErrorContains(t, err, "epoll_wait failed")
	// The connection is still usable: the plugin applied the changes.
	done = fake.replyAsync(t, func(seq uint32) []byte { return encEvents(seq, fWoken) })
	n, err := c.Wait(make([]sdk.Event, 1), -1)
	<-done
	require.NoError(t, err)
	require.Zero(t, n)
}

// Error events that do not fit the caller's slice are kept for the next
// Wait, which polls so they arrive promptly.
func TestErrorEventsCarriedOver(t *testing.T) {
	c, fake := newFakeClient(t)
	a, _ := pair(t)
	b, _ := pair(t)
	t1, t2 := sdk.MakeToken(1, 1), sdk.MakeToken(2, 1)
	require.NoError(t, c.Register(a, t1, sdk.Read))
	require.NoError(t, c.Register(b, t2, sdk.Read))
	done := fake.replyAsync(t, func(seq uint32) []byte {
		return encEvents(seq, 0, evRec{t1, 0, uint32(unix.EPERM)}, evRec{t2, 0, uint32(unix.EPERM)})
	})
	evs := make([]sdk.Event, 1)
	n, err := c.Wait(evs, -1)
	require.NoError(t, err)
	<-done
	require.Equal(t, []sdk.Event{{Token: t1, Events: sdk.Error}}, evs[:n])

	var timeout uint64
	done = fake.replyAsync(t, func(seq uint32) []byte {
		return encEvents(seq, 0)
	})
	n, err = c.Wait(evs, -1)
	require.NoError(t, err)
	<-done
	timeout = le.Uint64(fake.buf[16:])
	require.Equal(t, uint64(0), timeout, "the Wait that reports carried errors polls")
	require.Equal(t, []sdk.Event{{Token: t2, Events: sdk.Error}}, evs[:n])
	// Failed registrations are not sent again: unregistering them is local.
	require.NoError(t, c.Unregister(t1))
	require.NoError(t, c.Unregister(t2))
	require.Len(t, c.queue, 0)
}
