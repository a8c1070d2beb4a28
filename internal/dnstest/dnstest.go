// Package dnstest is a programmable DNS server on 127.0.0.1 (UDP and TCP on
// one port, on github.com/miekg/dns's server) for the resolver tests, the
// resolver conformance suite and `loopkernel bench resolve`: a zone of
// records, negative answers with an SOA (RFC 2308), a count of the queries
// per question, and per-name misbehaviour (silence, truncation, wrong IDs,
// malformed, oversized and forged answers, failures, delays).
//
// It imports miekg/dns and nothing of this project, so any package may use
// it, and it never sends to an address other than its clients' on
// loopback.
package dnstest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// T is the part of a test the server reports to (*testing.T, *testing.B
// and the conformance suite's case context all satisfy it).
type T interface {
	Helper()
	Errorf(format string, args ...any)
	FailNow()
	Cleanup(func())
}

// Mode is how the server treats the questions about one name.
type Mode int

const (
	// Answer from the zone (the default).
	Answer Mode = iota
	// Silent never answers.
	Silent
	// Truncate answers over UDP with the TC bit and no records; over TCP
	// it answers from the zone.
	Truncate
	// WrongID answers over UDP with an ID one off ours, and never with
	// ours.
	WrongID
	// Malformed answers with our ID and bytes that do not parse.
	Malformed
	// Oversized answers over UDP with our ID, 100 A records and no TC bit:
	// more than the client advertised.
	Oversized
	// Forged first sends an answer with our ID and the address 192.0.2.66
	// from another socket (another source address than the one asked),
	// then the zone's answer 50 ms later from the right one.
	Forged
	// ServFail answers SERVFAIL.
	ServFail
	// WrongName answers with our ID a question about another name.
	WrongName
)

// Server is a running test DNS server.
type Server struct {
	// Addr is where it listens, UDP and TCP.
	Addr netip.AddrPort
	// Zone names the SOA of its negative answers ("test."). Every name
	// without records is NXDOMAIN (or NODATA) with that SOA, which a
	// resolver may keep only for names under the zone (RFC 2308).
	Zone string

	udp, tcp *dns.Server

	mu      sync.Mutex
	records map[key][]dns.RR
	modes   map[string]Mode
	delay   time.Duration
	negTTL  uint32
	queries map[key]int

	udpCount, tcpCount, ednsCount atomic.Int64
}

type key struct {
	name  string
	qtype uint16
}

// Start starts a server for zone "test." on 127.0.0.1 and stops it when t
// ends.
func Start(t T) *Server {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Errorf("dnstest: %v", err)
		t.FailNow()
	}
	t.Cleanup(s.Close)
	return s
}

// New starts a server for zone "test." on a free port of 127.0.0.1; Close
// stops it.
func New() (*Server, error) { return NewAt("127.0.0.1:0") }

// NewAt starts a server for zone "test." on addr, a loopback address and
// port (port 0: one free for both UDP and TCP); Close stops it.
func NewAt(addr string) (*Server, error) {
	s := &Server{Zone: "test.", records: make(map[key][]dns.RR), modes: make(map[string]Mode),
		queries: make(map[key]int), negTTL: 60}
	// Find a port free for both transports: bind UDP on any port, then TCP
	// on the same one; retry if TCP's is taken.
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		pc, err = net.ListenPacket("udp4", addr)
		if err != nil {
			return nil, err
		}
		ln, err = net.Listen("tcp4", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
		if !strings.HasSuffix(addr, ":0") {
			return nil, err
		}
	}
	if pc == nil {
		return nil, fmt.Errorf("no port free for both UDP and TCP on %s", addr)
	}
	s.Addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	h := dns.HandlerFunc(s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: ln, Handler: h}
	started := make(chan struct{}, 2)
	s.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	<-started
	<-started
	return s, nil
}

// Close stops the server.
func (s *Server) Close() {
	s.udp.Shutdown()
	s.tcp.Shutdown()
}

// Add puts records in the zone, given in zone-file syntax
// ("a.test. 60 IN A 127.0.0.2"). It panics on a malformed record: that is
// a mistake in the test.
func (s *Server) Add(records ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			panic(fmt.Sprintf("dnstest: record %q: %v", r, err))
		}
		h := rr.Header()
		k := key{strings.ToLower(h.Name), h.Rrtype}
		s.records[k] = append(s.records[k], rr)
	}
}

// Remove deletes every record of name.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.records {
		if k.name == strings.ToLower(dns.Fqdn(name)) {
			delete(s.records, k)
		}
	}
}

// SetMode sets how questions about name are treated.
func (s *Server) SetMode(name string, m Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.modes[strings.ToLower(dns.Fqdn(name))] = m
}

// SetDelay makes every answer wait d first.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// SetNegativeTTL sets the SOA TTL and MINIMUM of negative answers.
func (s *Server) SetNegativeTTL(sec uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.negTTL = sec
}

// Queries is how many questions (name, type) reached the server, over
// either transport.
func (s *Server) Queries(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[key{strings.ToLower(dns.Fqdn(name)), qtype}]
}

// TCPQueries is how many questions came over TCP; UDPQueries over UDP.
func (s *Server) TCPQueries() int { return int(s.tcpCount.Load()) }

// UDPQueries is how many questions came over UDP.
func (s *Server) UDPQueries() int { return int(s.udpCount.Load()) }

// EDNSQueries is how many questions carried an EDNS0 OPT record.
func (s *Server) EDNSQueries() int { return int(s.ednsCount.Load()) }

// ResolvConf writes a resolv.conf naming servers (with their ports, the
// dns back-end's extension) and the extra lines, in dir, and returns its
// path.
func ResolvConf(dir string, servers []netip.AddrPort, lines ...string) (string, error) {
	var b strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	p := filepath.Join(dir, "resolv.conf")
	return p, os.WriteFile(p, []byte(b.String()), 0o644)
}

func (s *Server) serve(w dns.ResponseWriter, q *dns.Msg) {
	_, isUDP := w.RemoteAddr().(*net.UDPAddr)
	if isUDP {
		s.udpCount.Add(1)
	} else {
		s.tcpCount.Add(1)
	}
	if q.IsEdns0() != nil {
		s.ednsCount.Add(1)
	}
	if len(q.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(q, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	qq := q.Question[0]
	name := strings.ToLower(qq.Name)
	s.mu.Lock()
	s.queries[key{name, qq.Qtype}]++
	mode, delay := s.modes[name], s.delay
	s.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	switch mode {
	case Silent:
		return
	case Truncate:
		if isUDP {
			m := new(dns.Msg)
			m.SetReply(q)
			m.Truncated = true
			w.WriteMsg(m)
			return
		}
	case WrongID:
		if isUDP {
			m := s.answer(q)
			m.Id = q.Id + 1
			w.WriteMsg(m)
			return
		}
	case Malformed:
		b := []byte{byte(q.Id >> 8), byte(q.Id), 0x81, 0x80, 0, 1, 0, 5, 0, 0, 0, 0, 0xff, 0xff}
		w.Write(b)
		return
	case Oversized:
		if isUDP {
			m := new(dns.Msg)
			m.SetReply(q)
			for i := range 100 {
				rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A 127.0.%d.%d", qq.Name, i/250, i%250+1))
				m.Answer = append(m.Answer, rr)
			}
			m.Compress = false
			b, _ := m.Pack()
			w.Write(b)
			return
		}
	case Forged:
		if isUDP {
			s.forge(w.RemoteAddr(), q)
			time.Sleep(50 * time.Millisecond)
		}
	case ServFail:
		m := new(dns.Msg)
		m.SetRcode(q, dns.RcodeServerFailure)
		w.WriteMsg(m)
		return
	case WrongName:
		m := s.answer(q)
		m.Question[0].Name = "other." + s.Zone
		w.WriteMsg(m)
		return
	}
	w.WriteMsg(s.answer(q))
}

// forge sends to the client, from a socket of its own, an answer with the
// client's ID and an address of the documentation range.
func (s *Server) forge(to net.Addr, q *dns.Msg) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return
	}
	defer c.Close()
	m := new(dns.Msg)
	m.SetReply(q)
	rr, _ := dns.NewRR(q.Question[0].Name + " 3600 IN A 192.0.2.66")
	if q.Question[0].Qtype == dns.TypeA {
		m.Answer = append(m.Answer, rr)
	}
	b, _ := m.Pack()
	c.WriteTo(b, to)
}

// answer is the zone's answer to q: its records (following CNAMEs within
// the zone), NODATA or NXDOMAIN with the SOA, or REFUSED outside the zone.
func (s *Server) answer(q *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	if opt := q.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}
	qq := q.Question[0]
	name := strings.ToLower(qq.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	for range 8 {
		if rrs := s.records[key{name, qq.Qtype}]; len(rrs) > 0 {
			m.Answer = append(m.Answer, rrs...)
			return m
		}
		cn := s.records[key{name, dns.TypeCNAME}]
		if len(cn) == 0 {
			break
		}
		m.Answer = append(m.Answer, cn...)
		name = strings.ToLower(cn[0].(*dns.CNAME).Target)
	}
	exists := false
	for k := range s.records {
		if k.name == name {
			exists = true
			break
		}
	}
	if !exists {
		m.Rcode = dns.RcodeNameError
	}
	soa, _ := dns.NewRR(fmt.Sprintf("%s %d IN SOA ns.%s hostmaster.%s 1 3600 600 86400 %d", s.Zone, s.negTTL, s.Zone, s.Zone, s.negTTL))
	m.Ns = append(m.Ns, soa)
	return m
}
