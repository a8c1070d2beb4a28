package kernel_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// rsLoop is a loop on the in-process epoll selector, closed with the test.
func rsLoop(t testing.TB) *kernel.Loop {
	sel, err := selector.NewEpoll()
	require.NoError(t, err)
	l := kernel.New(sel)
	t.Cleanup(func() { l.Close() })
	return l
}

// rsRun runs body as a task to completion and returns its outcome.
func rsRun[T any](t testing.TB, l *kernel.Loop, body func(co *kernel.Co) (T, error)) (T, error) {
	t.Helper()
	task, err := kernel.CreateTask(l, body)
	require.NoError(t, err)
	if err := l.RunUntilComplete(task); err != nil {
		var zero T
		return zero, err
	}
	return task.Result()
}

func TestGetaddrinfoNumericIsSynchronous(t *testing.T) {
	l := rsLoop(t)
	stub := &countingResolver{}
	l.SetResolver(stub)
	for _, host := range []string{"127.0.0.1", "::1"} {
		f, err := l.Getaddrinfo(host, "8080", sdk.AddrinfoHints{SockType: syscall.SOCK_STREAM})
		require.NoError(t, err)
		require.True(t, f.Done(), "numeric lookups complete before Getaddrinfo returns")
		ai, err := f.Result()
		require.NoError(t, err)
		require.Len(t, ai, 1)
		assert.Equal(t, netip.AddrPortFrom(netip.MustParseAddr(host), 8080), ai[0].Addr)
	}
	f, err := l.Getaddrinfo("::1", "1", sdk.AddrinfoHints{Family: syscall.AF_INET})
	require.NoError(t, err)
	require.True(t, f.Done())
	var de *net.DNSError
	assert.True(t, errors.As(f.Err(), &de), "%v", f.Err())
	assert.Contains(t, f.Err().Error(), `"::1"`)
	assert.Zero(t, stub.calls.Load(), "numeric hosts never reach the resolver")
}

func TestGetaddrinfoLocalhostOffLoop(t *testing.T) {
	l := rsLoop(t)
	ai, err := rsRun(t, l, func(co *kernel.Co) ([]sdk.Addrinfo, error) {
		f, err := l.Getaddrinfo("localhost", "http", sdk.AddrinfoHints{Family: syscall.AF_INET, SockType: syscall.SOCK_STREAM})
		if err != nil {
			return nil, err
		}
		return f.Await(co)
	})
	require.NoError(t, err)
	require.NotEmpty(t, ai)
	assert.Equal(t, "127.0.0.1:80", ai[0].Addr.String())
}

func TestGetaddrinfoBadHostWrapsDNSError(t *testing.T) {
	l := rsLoop(t)
	_, err := rsRun(t, l, func(co *kernel.Co) ([]sdk.Addrinfo, error) {
		f, err := l.Getaddrinfo("no-such-host.invalid", "80", sdk.AddrinfoHints{})
		if err != nil {
			return nil, err
		}
		return f.Await(co)
	})
	var de *net.DNSError
	require.True(t, errors.As(err, &de), "%v", err)
	assert.Contains(t, err.Error(), "no-such-host.invalid")
	assert.Contains(t, err.Error(), `"80"`)
}

func TestGetaddrinfoCustomResolverAndCancel(t *testing.T) {
	l := rsLoop(t)
	block := &blockingResolver{started: make(chan struct{}), ended: make(chan error, 1)}
	l.SetResolver(block)
	assert.Same(t, sdk.Resolver(block), l.Resolver())
	_, err := rsRun(t, l, func(co *kernel.Co) (struct{}, error) {
		f, err := l.Getaddrinfo("example.test", "80", sdk.AddrinfoHints{})
		if err != nil {
			return struct{}{}, err
		}
		<-block.started
		f.Cancel()
		_, err = f.Await(co)
		return struct{}{}, err
	})
	assert.ErrorIs(t, err, kernel.ErrCancelled)
	assert.ErrorIs(t, <-block.ended, context.Canceled, "cancelling the future cancels the lookup's context")

	l.SetResolver(nil)
	assert.NotSame(t, sdk.Resolver(block), l.Resolver())
}

func TestGetnameinfo(t *testing.T) {
	l := rsLoop(t)
	f, err := l.Getnameinfo(netip.MustParseAddrPort("[::1]:443"), sdk.NINumericHost|sdk.NINumericServ)
	require.NoError(t, err)
	require.True(t, f.Done())
	ni, err := f.Result()
	require.NoError(t, err)
	assert.Equal(t, sdk.NameInfo{Host: "::1", Service: "443"}, ni)

	ni, err = rsRun(t, l, func(co *kernel.Co) (sdk.NameInfo, error) {
		f, err := l.Getnameinfo(netip.MustParseAddrPort("127.0.0.1:22"), sdk.NINumericServ)
		if err != nil {
			return sdk.NameInfo{}, err
		}
		return f.Await(co)
	})
	require.NoError(t, err)
	assert.Equal(t, "22", ni.Service)
	assert.NotEmpty(t, ni.Host)
}

func TestGetaddrinfoClosedLoop(t *testing.T) {
	l := rsLoop(t)
	require.NoError(t, l.Close())
	_, err := l.Getaddrinfo("127.0.0.1", "1", sdk.AddrinfoHints{})
	assert.ErrorIs(t, err, kernel.ErrClosed)
}

type countingResolver struct{ calls atomic.Int32 }

func (r *countingResolver) Getaddrinfo(context.Context, string, string, sdk.AddrinfoHints) ([]sdk.Addrinfo, error) {
	r.calls.Add(1)
	return nil, errors.New("unexpected lookup")
}

func (r *countingResolver) Getnameinfo(context.Context, netip.AddrPort, int) (sdk.NameInfo, error) {
	r.calls.Add(1)
	return sdk.NameInfo{}, errors.New("unexpected lookup")
}

// blockingResolver blocks every lookup until its context is cancelled.
type blockingResolver struct {
	started chan struct{}
	ended   chan error
}

func (r *blockingResolver) Getaddrinfo(ctx context.Context, _, _ string, _ sdk.AddrinfoHints) ([]sdk.Addrinfo, error) {
	close(r.started)
	<-ctx.Done()
	r.ended <- ctx.Err()
	return nil, ctx.Err()
}

func (r *blockingResolver) Getnameinfo(ctx context.Context, _ netip.AddrPort, _ int) (sdk.NameInfo, error) {
	<-ctx.Done()
	return sdk.NameInfo{}, ctx.Err()
}
