package resolver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/sdk"
)

func addrs(ai []sdk.Addrinfo) []string {
	var out []string
	for _, a := range ai {
		out = append(out, a.Addr.String())
	}
	return out
}

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
		{"v6 host, AF_INET", "::1", "1", sdk.AddrinfoHints{Family: syscall.AF_INET}, msgFamily},
		{"v4 host, AF_INET6", "127.0.0.1", "1", sdk.AddrinfoHints{Family: syscall.AF_INET6}, msgFamily},
		{"numeric host flag", "localhost", "1", sdk.AddrinfoHints{Flags: sdk.AINumericHost}, msgNoName},
		{"numeric serv flag", "127.0.0.1", "http", sdk.AddrinfoHints{Flags: sdk.AINumericServ}, msgNoName},
		{"port out of range", "127.0.0.1", "70000", sdk.AddrinfoHints{}, msgService},
		{"bad socktype", "127.0.0.1", "1", sdk.AddrinfoHints{SockType: syscall.SOCK_STREAM, Protocol: syscall.IPPROTO_UDP}, msgSockType},
		{"bad family", "127.0.0.1", "1", sdk.AddrinfoHints{Family: syscall.AF_UNIX}, "ai_family not supported"},
		{"bad flags", "127.0.0.1", "1", sdk.AddrinfoHints{Flags: 0x10000}, msgBadFlags},
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

func TestEmptyHost(t *testing.T) {
	h := sdk.AddrinfoHints{SockType: syscall.SOCK_STREAM, Flags: sdk.AIPassive}
	ai, ok, err := Numeric("", "8080", h)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, []string{"0.0.0.0:8080", "[::]:8080"}, addrs(ai))

	h.Flags = 0
	ai, _, err = Numeric("", "8080", h)
	require.NoError(t, err)
	assert.Equal(t, []string{"127.0.0.1:8080", "[::1]:8080"}, addrs(ai))

	h.Family, h.Flags = syscall.AF_INET6, sdk.AIPassive
	ai, _, err = Numeric("", "", h)
	require.NoError(t, err)
	assert.Equal(t, []string{"[::]:0"}, addrs(ai))
}

func TestGetaddrinfoLocalhost(t *testing.T) {
	r := New(nil)
	ai, err := r.Getaddrinfo(context.Background(), "localhost", "80", sdk.AddrinfoHints{Family: syscall.AF_INET, SockType: syscall.SOCK_STREAM, Flags: sdk.AICanonName})
	require.NoError(t, err)
	require.NotEmpty(t, ai)
	assert.Contains(t, addrs(ai), "127.0.0.1:80")
	for _, a := range ai {
		assert.Equal(t, syscall.AF_INET, a.Family)
		assert.True(t, a.Addr.Addr().IsLoopback())
		assert.Equal(t, syscall.SOCK_STREAM, a.SockType)
	}
	assert.NotEmpty(t, ai[0].CanonName)
}

func TestGetaddrinfoPortNames(t *testing.T) {
	r := New(nil)
	ai, err := r.Getaddrinfo(context.Background(), "127.0.0.1", "http", sdk.AddrinfoHints{})
	require.NoError(t, err)
	// http names a TCP (and, in most services files, a UDP) port; never a raw one.
	require.NotEmpty(t, ai)
	for _, a := range ai {
		assert.Equal(t, uint16(80), a.Addr.Port())
		assert.NotEqual(t, syscall.SOCK_RAW, a.SockType)
	}
	assert.Equal(t, syscall.SOCK_STREAM, ai[0].SockType)

	_, err = r.Getaddrinfo(context.Background(), "127.0.0.1", "no-such-service-xyz", sdk.AddrinfoHints{SockType: syscall.SOCK_STREAM})
	var de *net.DNSError
	require.True(t, errors.As(err, &de), "%v", err)
}

func TestGetaddrinfoBadHost(t *testing.T) {
	r := New(nil)
	// .invalid is reserved (RFC 2606) and never resolves; a sandbox without
	// DNS fails it too, with a DNSError either way.
	_, err := r.Getaddrinfo(context.Background(), "no-such-host.invalid", "80", sdk.AddrinfoHints{})
	var de *net.DNSError
	require.True(t, errors.As(err, &de), "%v", err)
}

func TestGetaddrinfoCancelled(t *testing.T) {
	r := New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := r.Getaddrinfo(ctx, "no-such-host.invalid", "80", sdk.AddrinfoHints{})
	require.Error(t, err)
}

func TestAddrConfig(t *testing.T) {
	r := New(nil)
	r.ifaceFamilies = func() (bool, bool) { return true, false }
	ai, err := r.Getaddrinfo(context.Background(), "", "1", sdk.AddrinfoHints{SockType: syscall.SOCK_STREAM, Flags: sdk.AIAddrConfig})
	require.NoError(t, err)
	assert.Equal(t, []string{"127.0.0.1:1"}, addrs(ai))

	_, err = r.Getaddrinfo(context.Background(), "::1", "1", sdk.AddrinfoHints{Flags: sdk.AIAddrConfig})
	var de *net.DNSError
	require.True(t, errors.As(err, &de), "%v", err)
	assert.Equal(t, msgFamily, de.Err)
}

func TestGetnameinfo(t *testing.T) {
	r := New(nil)
	ctx := context.Background()
	ni, err := r.Getnameinfo(ctx, netip.MustParseAddrPort("127.0.0.1:80"), sdk.NINumericHost|sdk.NINumericServ)
	require.NoError(t, err)
	assert.Equal(t, sdk.NameInfo{Host: "127.0.0.1", Service: "80"}, ni)

	ni, err = r.Getnameinfo(ctx, netip.MustParseAddrPort("127.0.0.1:80"), sdk.NINumericHost)
	require.NoError(t, err)
	if _, ok := loadServices().byPort("tcp", 80); ok {
		assert.Equal(t, "http", ni.Service)
	}

	// 127.0.0.1 is named in every hosts file.
	ni, err = r.Getnameinfo(ctx, netip.MustParseAddrPort("127.0.0.1:1"), sdk.NINumericServ)
	require.NoError(t, err)
	assert.NotEqual(t, "127.0.0.1", ni.Host)
	assert.Equal(t, "1", ni.Service)

	_, err = r.Getnameinfo(ctx, netip.AddrPort{}, 0)
	assert.Error(t, err)
	_, err = r.Getnameinfo(ctx, netip.MustParseAddrPort("127.0.0.1:1"), 0x1000)
	assert.Error(t, err)
}

func TestParseServices(t *testing.T) {
	st := parseServices([]byte("# comment\nhttp\t80/tcp www # web\nhttp 80/udp\nalt 80/tcp\nbad\nx 99999/tcp\ny 5/sctp\nz 7/tcp"))
	name, ok := st.byPort("tcp", 80)
	assert.True(t, ok)
	assert.Equal(t, "http", name, "first name listed wins")
	_, ok = st.byPort("udp", 80)
	assert.True(t, ok)
	name, ok = st.byPort("tcp", 7)
	assert.True(t, ok, "last line without newline")
	assert.Equal(t, "z", name)
	assert.Len(t, st.tcp, 2)
	assert.Len(t, st.udp, 1)
}

func FuzzParseServices(f *testing.F) {
	f.Add([]byte("http 80/tcp www\n"))
	f.Add([]byte("a 1/udp#x\n\n b\t2/tcp"))
	f.Add([]byte("x 65536/tcp\ny /tcp\nz 3/\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st := parseServices(data)
		for _, m := range []map[uint16]string{st.tcp, st.udp} {
			for _, name := range m {
				if name == "" {
					t.Fatal("empty service name")
				}
				for _, c := range name {
					if c == ' ' || c == '\t' || c == '\n' || c == '#' {
						t.Fatalf("name %q holds a separator", name)
					}
				}
			}
		}
	})
}
