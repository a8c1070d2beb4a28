package kernel_test

import (
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/sdk"
)

// cachingResolver answers "cached.test" from memory and everything else
// by the slow path, counting both.
type cachingResolver struct {
	countingResolver
	hits atomic.Int32
}

func (r *cachingResolver) GetaddrinfoCached(host, port string, hints sdk.AddrinfoHints) ([]sdk.Addrinfo, bool) {
	if host != "cached.test" {
		return nil, false
	}
	r.hits.Add(1)
	return []sdk.Addrinfo{{Family: syscall.AF_INET, SockType: syscall.SOCK_STREAM, Protocol: syscall.IPPROTO_TCP,
		Addr: netip.MustParseAddrPort("127.0.0.5:80")}}, true
}

var _ sdk.CachedResolver = (*cachingResolver)(nil)

// A resolver's cache hit is answered on the loop goroutine, with the future
// done before Getaddrinfo returns; a miss goes to the resolver as before.
func TestGetaddrinfoCachedHitIsSynchronous(t *testing.T) {
	l := rsLoop(t)
	r := &cachingResolver{}
	l.SetResolver(r)
	f, err := l.Getaddrinfo("cached.test", "80", sdk.AddrinfoHints{SockType: syscall.SOCK_STREAM})
	require.NoError(t, err)
	require.True(t, f.Done(), "a cache hit completes before Getaddrinfo returns")
	ai, err := f.Result()
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.5:80", ai[0].Addr.String())
	assert.Equal(t, int32(1), r.hits.Load())
	assert.Zero(t, r.calls.Load(), "a hit does not reach Getaddrinfo")

	_, err = l.Getaddrinfo("other.test", "80", sdk.AddrinfoHints{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return r.calls.Load() == 1 }, 5*time.Second, time.Millisecond, "a miss goes to the resolver")
}
