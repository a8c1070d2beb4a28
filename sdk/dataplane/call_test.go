package dataplane

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/sdk"
)

// tableResolver answers from a fixed table; "slow.test" waits for its
// context.
type tableResolver struct{}

func (tableResolver) Getaddrinfo(ctx context.Context, host, port string, h sdk.AddrinfoHints) ([]sdk.Addrinfo, error) {
	switch host {
	case "db.test":
		return []sdk.Addrinfo{
			{Family: syscall.AF_INET6, SockType: syscall.SOCK_STREAM, Protocol: 6, CanonName: "db.test.", Addr: netip.MustParseAddrPort("[fe80::1%lo]:80")},
			{Family: syscall.AF_INET, SockType: syscall.SOCK_STREAM, Protocol: 6, Addr: netip.MustParseAddrPort("127.0.0.1:80")},
		}, nil
	case "slow.test":
		<-ctx.Done()
		return nil, ctx.Err()
	case "errno.test":
		return nil, syscall.EAGAIN
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, Server: "127.0.0.53:53", IsNotFound: true}
}

func (tableResolver) Getnameinfo(_ context.Context, a netip.AddrPort, flags int) (sdk.NameInfo, error) {
	return sdk.NameInfo{Host: a.Addr().String(), Service: "svc"}, nil
}

// echoExecutor runs a few functions without the global registry.
type echoExecutor struct{}

// blocked counts the "block" calls running, so a test knows when they are
// in flight.
var blocked atomic.Int32

func (echoExecutor) Call(ctx context.Context, fn string, arg []byte) ([]byte, error) {
	switch fn {
	case "echo":
		return arg, nil
	case "fail":
		return nil, &sdk.CallError{Func: fn, Message: "it failed"}
	case "block":
		blocked.Add(1)
		defer blocked.Add(-1)
		<-ctx.Done()
		return nil, ctx.Err()
	case "sleep":
		time.Sleep(time.Duration(arg[0]) * time.Millisecond)
		return arg, nil
	}
	return nil, sdk.ErrUnknownFunc
}

func (echoExecutor) Close() error { return nil }

// callPair serves h on one end of a socket pair and returns a client on
// the other; the plugin end is returned so a test can "kill" it.
func callPair(t *testing.T, fam Family, h CallHandlers) (*CallClient, *os.File, chan error) {
	t.Helper()
	host, plug, err := Socketpair()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 2)
	go func() {
		err := ServeCalls(ctx, plug, h, nil)
		served <- err
		served <- err // once for the test, once for the cleanup
	}()
	c, err := NewCallClient(host, fam, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		cancel()
		c.Close()
		<-served
		plug.Close()
	})
	return c, plug, served
}

func TestCallPlaneResolver(t *testing.T) {
	c, _, _ := callPair(t, FamilyResolver, CallHandlers{Name: "table", Resolver: tableResolver{}})
	assert.Equal(t, "table", c.Name())
	ctx := context.Background()
	ais, err := c.Getaddrinfo(ctx, "db.test", "80", sdk.AddrinfoHints{})
	require.NoError(t, err)
	want, _ := tableResolver{}.Getaddrinfo(ctx, "db.test", "80", sdk.AddrinfoHints{})
	assert.Equal(t, want, ais)

	_, err = c.Getaddrinfo(ctx, "nx.test", "", sdk.AddrinfoHints{})
	var dnse *net.DNSError
	require.ErrorAs(t, err, &dnse)
	assert.Equal(t, net.DNSError{Err: "no such host", Name: "nx.test", Server: "127.0.0.53:53", IsNotFound: true}, *dnse)

	_, err = c.Getaddrinfo(ctx, "errno.test", "", sdk.AddrinfoHints{})
	assert.ErrorIs(t, err, syscall.EAGAIN)

	ni, err := c.Getnameinfo(ctx, netip.MustParseAddrPort("[::1]:22"), 0)
	require.NoError(t, err)
	assert.Equal(t, sdk.NameInfo{Host: "::1", Service: "svc"}, ni)
	ni, err = c.Getnameinfo(ctx, netip.MustParseAddrPort("127.0.0.1:22"), 0)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", ni.Host, "an IPv4 address stays IPv4")
}

func TestCallPlaneExecutor(t *testing.T) {
	c, _, _ := callPair(t, FamilyExecutor, CallHandlers{Name: "echo", Executor: echoExecutor{}})
	ctx := context.Background()
	out, err := c.Call(ctx, "echo", []byte("hi"))
	require.NoError(t, err)
	assert.Equal(t, "hi", string(out))

	// Larger than a frame: the message is cut into continuation frames.
	big := bytes.Repeat([]byte("0123456789abcdef"), 40000)
	out, err = c.Call(ctx, "echo", big)
	require.NoError(t, err)
	assert.Equal(t, big, out)

	_, err = c.Call(ctx, "fail", nil)
	var ce *sdk.CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, sdk.CallError{Func: "fail", Message: "it failed"}, *ce)
	_, err = c.Call(ctx, "nosuch", nil)
	assert.ErrorIs(t, err, sdk.ErrUnknownFunc)

	// A resolver call on an executor plane is refused by the type system;
	// a resolver hello on it is refused by the plugin.
	host, plug, err := Socketpair()
	require.NoError(t, err)
	refused := make(chan error, 1)
	go func() {
		refused <- ServeCalls(context.Background(), plug, CallHandlers{Name: "echo", Executor: echoExecutor{}}, nil)
	}()
	_, err = NewCallClient(host, FamilyResolver, nil)
	assert.ErrorIs(t, err, syscall.EPROTONOSUPPORT)
	assert.ErrorContains(t, <-refused, "asked for a resolver, which this plugin does not serve")
	plug.Close()
}

// Calls are answered as they finish, not in the order they were made.
func TestCallPlaneOutOfOrder(t *testing.T) {
	c, _, _ := callPair(t, FamilyExecutor, CallHandlers{Name: "echo", Executor: echoExecutor{}})
	var (
		mu    sync.Mutex
		order []byte
		wg    sync.WaitGroup
	)
	for _, ms := range []byte{200, 100, 1} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.Call(context.Background(), "sleep", []byte{ms})
			assert.NoError(t, err)
			mu.Lock()
			order = append(order, out[0])
			mu.Unlock()
		}()
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	assert.Equal(t, []byte{1, 100, 200}, order)
}

func TestCallPlaneCancelAndDeath(t *testing.T) {
	c, plug, served := callPair(t, FamilyExecutor, CallHandlers{Name: "echo", Executor: echoExecutor{}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := c.Call(ctx, "block", nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, c.Ping(context.Background()), "the plane carries on after a cancelled call")
	for blocked.Load() != 0 {
		time.Sleep(time.Millisecond) // the cancel reaches the function
	}

	// Calls in flight when the plugin's end goes away fail as died.
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := c.Call(context.Background(), "block", nil)
			errs <- err
		}()
	}
	for blocked.Load() != 3 {
		time.Sleep(time.Millisecond)
	}
	require.NoError(t, syscall.Shutdown(int(plug.Fd()), syscall.SHUT_RDWR))
	for range 3 {
		err := <-errs
		assert.ErrorIs(t, err, sdk.ErrBackendDied)
		assert.ErrorIs(t, err, ErrPeerGone)
	}
	<-c.Done()
	_, err = c.Call(context.Background(), "echo", nil)
	assert.ErrorIs(t, err, ErrPeerGone)
	assert.False(t, errors.Is(err, sdk.ErrBackendDied), "a call made after the death was never sent")
	<-served
}

func callSeeds() [][]byte {
	ais, _ := encodeAddrinfos([]sdk.Addrinfo{
		{Family: syscall.AF_INET6, SockType: 1, Protocol: 6, CanonName: "db.test.", Addr: netip.MustParseAddrPort("[fe80::1%lo]:80")},
		{Family: syscall.AF_INET, Addr: netip.MustParseAddrPort("127.0.0.1:80")},
	})
	dfixed, da, db, dc := dnsErrorFields(&net.DNSError{Err: "no such host", Name: "x", IsNotFound: true})
	gni := make([]byte, 24)
	gni[16] = 4
	return [][]byte{
		encodeCallMsg(ctHello, uint8(FamilyResolver), 0, 0, nil, nil, nil, nil),
		encodeCallMsg(ctHelloRepl, uint8(FamilyExecutor), stOK, 0, nil, []byte("go"), nil, nil),
		encodeCallMsg(ctHelloRepl, uint8(FamilyExecutor), stError, 0, []byte{93, 0, 0, 0}, []byte("no"), nil, nil),
		encodeCallMsg(ctCall, kGetaddrinfo, 0, 1, make([]byte, 16), []byte("localhost"), []byte("http"), nil),
		encodeCallMsg(ctCall, kGetnameinfo, 0, 2, gni, nil, nil, nil),
		encodeCallMsg(ctCall, kFunc, 0, 3, nil, []byte("echo"), []byte("arg"), nil),
		encodeCallMsg(ctCancel, 0, 0, 3, nil, nil, nil, nil),
		encodeCallMsg(ctPing, 0, 0, 4, nil, nil, nil, nil),
		encodeCallMsg(ctGoodbye, 0, 0, 0, nil, nil, nil, nil),
		encodeCallMsg(ctResult, kGetaddrinfo, stOK, 1, []byte{2, 0, 0, 0}, ais, nil, nil),
		encodeCallMsg(ctResult, kGetaddrinfo, stDNSError, 1, dfixed, da, db, dc),
		encodeCallMsg(ctResult, kGetnameinfo, stOK, 2, nil, []byte("localhost"), []byte("ssh"), nil),
		encodeCallMsg(ctResult, kFunc, stFuncError, 3, nil, []byte("boom"), nil, nil),
		encodeCallMsg(ctResult, kFunc, stError, 3, []byte{5, 0, 0, 0}, []byte("eio"), nil, nil),
		encodeCallMsg(ctPong, 0, 0, 4, nil, nil, nil, nil),
	}
}

// FuzzDecodeCallMsg: the call-plane decoder either refuses a message with
// ErrProtocol or accepts one that encodes back to the same bytes.
func FuzzDecodeCallMsg(f *testing.F) {
	for _, s := range callSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeCallMsg(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		again := encodeCallMsg(m.typ, m.kind, m.status, m.id, m.fixed, m.a, m.b, m.c)
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted %x, which encodes back as %x", b, again)
		}
	})
}

// FuzzDecodeAddrinfos: getaddrinfo results either fail with ErrProtocol or
// survive a round trip unchanged.
func FuzzDecodeAddrinfos(f *testing.F) {
	m, _ := decodeCallMsg(callSeeds()[9])
	f.Add(m.a, uint32(2))
	f.Add([]byte{}, uint32(0))
	f.Add(make([]byte, addrinfoRecLen), uint32(1))
	f.Fuzz(func(t *testing.T, b []byte, count uint32) {
		ais, err := decodeAddrinfos(b, count)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		again, err := encodeAddrinfos(ais)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeAddrinfos(again, uint32(len(ais)))
		if err != nil || !assert.ObjectsAreEqual(ais, back) {
			t.Fatalf("round trip of %v: %v, %v", ais, back, err)
		}
	})
}

// BenchmarkCallPlane is one small executor call through the call plane,
// both ends in this process: the plane's own cost, without a process
// boundary or the supervisor.
func BenchmarkCallPlane(b *testing.B) {
	host, plug, err := Socketpair()
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ServeCalls(ctx, plug, CallHandlers{Name: "echo", Executor: echoExecutor{}}, nil) }()
	c, err := NewCallClient(host, FamilyExecutor, nil)
	require.NoError(b, err)
	arg := []byte("0123456789abcdef")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Call(ctx, "echo", arg); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cancel()
	c.Close()
	<-served
	plug.Close()
}

// A plugin that never answers hello fails the client's start, in time.
func TestCallHelloTimesOut(t *testing.T) {
	defer func(d time.Duration) { helloTimeout = d }(helloTimeout)
	helloTimeout = 50 * time.Millisecond
	host, plug, err := Socketpair()
	require.NoError(t, err)
	defer plug.Close()
	start := time.Now()
	_, err = NewCallClient(host, FamilyExecutor, nil)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)
}

// Close is prompt even while a send is blocked on a plugin that stopped
// reading (a hung plugin), and the blocked call fails.
func TestCallCloseReleasesABlockedSend(t *testing.T) {
	host, plug, err := Socketpair()
	require.NoError(t, err)
	defer plug.Close()
	// Answer the hello by hand, then never read again.
	go func() {
		c := newCallConnT(t, plug)
		_, _ = c.recv()
		_ = c.send(encodeCallMsg(ctHelloRepl, uint8(FamilyExecutor), stOK, 0, nil, []byte("mute"), nil, nil))
	}()
	c, err := NewCallClient(host, FamilyExecutor, nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), "echo", make([]byte, 60<<20)) // more than the socket queue holds
		done <- err
	}()
	for c.cc.sendMu.TryLock() { // until the call's send holds the plane
		c.cc.sendMu.Unlock()
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // and has filled the socket
	select {
	case err := <-done:
		t.Fatalf("the call ended before Close: %v", err)
	default:
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung behind a blocked send")
	}
	assert.ErrorIs(t, <-done, ErrPeerGone)
}

func newCallConnT(t *testing.T, f *os.File) *callConn {
	c, err := newCallConn(f)
	require.NoError(t, err)
	t.Cleanup(func() { c.close() })
	return c
}
