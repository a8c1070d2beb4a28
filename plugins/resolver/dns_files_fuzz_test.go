package resolver

import (
	"strings"
	"testing"
)

// FuzzParseResolvConf: any resolv.conf text parses (malformed lines are
// skipped) into settings within glibc's bounds, with at least one server.
func FuzzParseResolvConf(f *testing.F) {
	f.Add([]byte("nameserver 10.0.0.1\nnameserver [::1]:5353\nsearch a b.\noptions ndots:20 timeout:99 attempts:0 rotate use-vc\n"))
	f.Add([]byte("domain x\nsearch\noptions ndots:-1 timeout: attempts:x\n# c\n; c\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := parseResolvConf(b, "h.example")
		if len(c.servers) == 0 || len(c.servers) > maxNameservers {
			t.Fatalf("%d servers", len(c.servers))
		}
		if c.ndots < 0 || c.ndots > maxNdots || c.attempts < 1 || c.attempts > maxAttempts ||
			c.timeout <= 0 || c.timeout > maxTimeout || len(c.search) > maxSearch {
			t.Fatalf("out of bounds: %+v", c)
		}
		for _, s := range c.search {
			if s == "" || strings.HasSuffix(s, ".") {
				t.Fatalf("search domain %q", s)
			}
		}
	})
}

// FuzzParseHosts: any hosts text parses, and every name it lists maps back
// to addresses that include one whose canonical name is known.
func FuzzParseHosts(f *testing.F) {
	f.Add([]byte("127.0.0.1 localhost lh\n::1 localhost ip6-localhost\nfe80::1%eth0 link # c\nbad line\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h := parseHosts(b)
		for name, e := range h.byName {
			if name != hostKey(name) || len(e.addrs) == 0 || e.canon == "" {
				t.Fatalf("entry %q: %+v", name, e)
			}
		}
	})
}
