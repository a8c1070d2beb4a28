package addrinfo

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/sdk"
)

func TestNumericExpandsSocketTypes(t *testing.T) {
	ai, ok, err := Numeric("127.0.0.1", "80", sdk.AddrinfoHints{})
	require.NoError(t, err)
	require.True(t, ok)
	require.Len(t, ai, 3)
	want := []struct{ st, proto int }{
		{syscall.SOCK_STREAM, syscall.IPPROTO_TCP},
		{syscall.SOCK_DGRAM, syscall.IPPROTO_UDP},
		{syscall.SOCK_RAW, 0},
	}
	for i, w := range want {
		assert.Equal(t, syscall.AF_INET, ai[i].Family)
		assert.Equal(t, w.st, ai[i].SockType)
		assert.Equal(t, w.proto, ai[i].Protocol)
		assert.Equal(t, netip.MustParseAddrPort("127.0.0.1:80"), ai[i].Addr)
	}

	ai, ok, err = Numeric("::1", "", sdk.AddrinfoHints{SockType: syscall.SOCK_STREAM, Flags: sdk.AICanonName})
	require.NoError(t, err)
	require.True(t, ok)
	require.Len(t, ai, 1)
	assert.Equal(t, syscall.AF_INET6, ai[0].Family)
	assert.Equal(t, "[::1]:0", ai[0].Addr.String())
	assert.Equal(t, "::1", ai[0].CanonName)
}

func TestNumericDefersNames(t *testing.T) {
	for _, q := range [][2]string{{"localhost", "80"}, {"127.0.0.1", "http"}, {"example.invalid", ""}} {
		_, ok, err := Numeric(q[0], q[1], sdk.AddrinfoHints{})
		assert.NoError(t, err, q)
		assert.False(t, ok, "%v must go to a lookup", q)
	}
}

func TestNumericErrors(t *testing.T) {
	cases := []struct {
		name, host, port string
		hints            sdk.AddrinfoHints
		msg              string
	}{
		{"v6 host, AF_INET", "::1", "1", sdk.AddrinfoHints{Family: syscall.AF_INET}, MsgFamily},
		{"v4 host, AF_INET6", "127.0.0.1", "1", sdk.AddrinfoHints{Family: syscall.AF_INET6}, MsgFamily},
		{"numeric host flag", "localhost", "1", sdk.AddrinfoHints{Flags: sdk.AINumericHost}, MsgNoName},
		{"numeric serv flag", "127.0.0.1", "http", sdk.AddrinfoHints{Flags: sdk.AINumericServ}, MsgNoName},
		{"port out of range", "127.0.0.1", "70000", sdk.AddrinfoHints{}, MsgService},
		{"bad socktype", "127.0.0.1", "1", sdk.AddrinfoHints{SockType: syscall.SOCK_STREAM, Protocol: syscall.IPPROTO_UDP}, MsgSockType},
		{"bad family", "127.0.0.1", "1", sdk.AddrinfoHints{Family: syscall.AF_UNIX}, "ai_family not supported"},
		{"bad flags", "127.0.0.1", "1", sdk.AddrinfoHints{Flags: 0x10000}, MsgBadFlags},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, ok, err := Numeric(c.host, c.port, c.hints)
			assert.True(t, ok)
			var de *net.DNSError
			require.True(t, errors.As(err, &de), "%v", err)
			assert.Equal(t, c.msg, de.Err)
		})
	}
}

func TestNumericV4Mapped(t *testing.T) {
	ai, _, err := Numeric("127.0.0.1", "7", sdk.AddrinfoHints{Family: syscall.AF_INET6, SockType: syscall.SOCK_STREAM, Flags: sdk.AIV4Mapped})
	require.NoError(t, err)
	require.Len(t, ai, 1)
	assert.Equal(t, syscall.AF_INET6, ai[0].Family)
	assert.Equal(t, "[::ffff:127.0.0.1]:7", ai[0].Addr.String())
}
