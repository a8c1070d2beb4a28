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

	"github.com/loopkernel/loopkernel/internal/addrinfo"
	"github.com/loopkernel/loopkernel/sdk"
)

func addrs(ai []sdk.Addrinfo) []string {
	var out []string
	for _, a := range ai {
		out = append(out, a.Addr.String())
	}
	return out
}

func TestEmptyHost(t *testing.T) {
	r, ctx := New(nil), context.Background()
	h := sdk.AddrinfoHints{SockType: syscall.SOCK_STREAM, Flags: sdk.AIPassive}
	ai, err := r.Getaddrinfo(ctx, "", "8080", h)
	require.NoError(t, err)
	assert.Equal(t, []string{"0.0.0.0:8080", "[::]:8080"}, addrs(ai))

	h.Flags = 0
	ai, err = r.Getaddrinfo(ctx, "", "8080", h)
	require.NoError(t, err)
	assert.Equal(t, []string{"127.0.0.1:8080", "[::1]:8080"}, addrs(ai))

	h.Family, h.Flags = syscall.AF_INET6, sdk.AIPassive
	ai, err = r.Getaddrinfo(ctx, "", "", h)
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
	assert.Equal(t, addrinfo.MsgFamily, de.Err)
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
