package resolver_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/dnstest"
	"github.com/loopkernel/loopkernel/plugins/resolver"
	"github.com/loopkernel/loopkernel/sdk"
)

// The dns back-end reads a resolv.conf of its own choosing: here one that
// names a server on loopback (with a port, this back-end's extension) and a
// search domain, so "www" is asked as www.test.
func ExampleNewDNS() {
	srv, err := dnstest.New()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	srv.Add("www.test. 300 IN A 127.0.0.8")
	dir, _ := os.MkdirTemp("", "example-dns-")
	defer os.RemoveAll(dir)
	conf, _ := dnstest.ResolvConf(dir, []netip.AddrPort{srv.Addr}, "search test")

	r := resolver.NewDNS(resolver.DNSOptions{ResolvConf: conf, Hosts: filepath.Join(dir, "hosts")})
	hints := sdk.AddrinfoHints{Family: unix.AF_INET, SockType: unix.SOCK_STREAM, Flags: sdk.AICanonName}
	ai, err := r.Getaddrinfo(context.Background(), "www", "443", hints)
	fmt.Println(err, ai[0].Addr, ai[0].CanonName)
	// The second lookup is a cache hit: a caller that must not block (the
	// loop goroutine) can ask for it alone.
	ai, ok := r.GetaddrinfoCached("www", "443", hints)
	fmt.Println(ok, ai[0].Addr)
	// Output:
	// <nil> 127.0.0.8:443 www.test
	// true 127.0.0.8:443
}

// Settings arrive by name, as a plugin's configuration does (Spec.Config,
// or $LOOPKERNEL_DNS for the registered back-end in either placement).
func ExampleDNS_Configure() {
	r := resolver.NewDNS(resolver.DNSOptions{})
	fmt.Println(r.Configure("cache_size", "10000"))
	fmt.Println(r.Configure("timeout", "soon"))
	// Output:
	// <nil>
	// dns resolver: timeout="soon": want a positive duration such as 500ms
}
