package policy

import (
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/internal/dnstest"
	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/resolver"
	"github.com/loopkernel/loopkernel/sdk"
)

// Loops built by a policy share its resolver, in process and as a plugin:
// a name one loop looked up is answered to another from the shared cache
// (the DNS server is asked once), and the resolver lives until the last
// loop holding it closes.
func TestLoopsShareTheResolver(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("shared.test. 300 IN A 127.0.0.9")
	dir := t.TempDir()
	conf, err := dnstest.ResolvConf(dir, []netip.AddrPort{srv.Addr}, "options attempts:1")
	require.NoError(t, err)
	hosts := filepath.Join(dir, "hosts")
	require.NoError(t, os.WriteFile(hosts, nil, 0o644))
	t.Setenv(resolver.DNSEnv, "resolv_conf="+conf+",hosts="+hosts)

	lookup := func(t *testing.T, l *kernel.Loop) {
		t.Helper()
		ai, err := testkit.Go(l, 10*time.Second, func(co *kernel.Co) ([]sdk.Addrinfo, error) {
			f, err := l.Getaddrinfo("shared.test", "80", sdk.AddrinfoHints{Family: syscall.AF_INET, SockType: syscall.SOCK_STREAM})
			if err != nil {
				return nil, err
			}
			return f.Await(co)
		})
		require.NoError(t, err)
		require.NotEmpty(t, ai)
		assert.Equal(t, netip.MustParseAddr("127.0.0.9"), ai[0].Addr.Addr())
	}
	for _, spec := range []string{"dns", "plugin:dns"} {
		t.Run(spec, func(t *testing.T) {
			asked := func() int { return srv.Queries("shared.test.", dns.TypeA) }
			before := asked()
			p := &Policy{Name: "shared-" + spec, Selector: "epoll", Resolver: spec}
			a, err := p.NewEventLoop()
			require.NoError(t, err)
			b, err := p.NewEventLoop()
			require.NoError(t, err)
			lookup(t, a)
			lookup(t, b)
			assert.Equal(t, before+1, asked(), "rule: the second loop's lookup is answered from the shared cache")

			require.NoError(t, a.Close())
			lookup(t, b) // still open: b holds it
			assert.Equal(t, before+1, asked(), "rule: the resolver outlives the first loop to close")
			require.NoError(t, b.Close())

			resolvers.Lock()
			left := len(resolvers.open)
			resolvers.Unlock()
			assert.Zero(t, left, "rule: the last loop to close closes the resolver")
			c, err := p.NewEventLoop()
			require.NoError(t, err)
			lookup(t, c)
			assert.Equal(t, before+2, asked(), "rule: a loop after the last one closed gets a new resolver, with a new cache")
			require.NoError(t, c.Close())
		})
	}
}
