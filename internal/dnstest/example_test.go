package dnstest_test

import (
	"fmt"
	"net"

	"github.com/miekg/dns"

	"github.com/loopkernel/loopkernel/internal/dnstest"
)

// A server answers from its zone and counts the questions; SetMode makes it
// misbehave for one name.
func ExampleServer() {
	srv, err := dnstest.New()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	srv.Add("a.test. 60 IN A 127.0.0.2")
	srv.SetMode("slow.test", dnstest.Silent)

	q := new(dns.Msg)
	q.SetQuestion("a.test.", dns.TypeA)
	m, err := dns.Exchange(q, srv.Addr.String())
	fmt.Println(err, m.Answer[0].(*dns.A).A.Equal(net.ParseIP("127.0.0.2")), srv.Queries("a.test", dns.TypeA))
	// Output: <nil> true 1
}
