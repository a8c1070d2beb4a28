package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// The wire half of the dns back-end: one question to the servers of a
// resolv.conf, over UDP with EDNS0, again over TCP when the answer was
// truncated, from one server to the next when one fails. It returns a
// checked answer or an error that says what went wrong with which server;
// it never caches (the caller decides what an answer is worth keeping).

// ednsSize is the UDP payload size we advertise: 1232 bytes fits the IPv6
// minimum MTU without fragmentation (the DNS flag day 2020 value). An
// answer that does not fit comes back truncated and is fetched over TCP.
const ednsSize = 1232

// maxUDPAnswer is the largest UDP answer accepted: what we advertised. A
// server that sends more ignored our EDNS0 size, and such an answer is
// refused as oversized rather than trusted.
const maxUDPAnswer = ednsSize

// answerError describes a bad answer: malformed, oversized, not an answer
// to our question. The server sent it, so the exchange moves on to the next
// server; it is never cached.
type answerError struct {
	server netip.AddrPort
	what   string
}

func (e *answerError) Error() string { return fmt.Sprintf("bad answer from %v: %s", e.server, e.what) }

// errNoAnswer is wrapped when a server sent nothing usable within the
// timeout.
var errNoAnswer = errors.New("no answer")

// serverError is a server's answer that says it could not answer
// (SERVFAIL, REFUSED, NOTIMP, FORMERR): try the next server.
type serverError struct {
	server netip.AddrPort
	rcode  int
}

func (e *serverError) Error() string {
	return fmt.Sprintf("server %v answered %s", e.server, dns.RcodeToString[e.rcode])
}

// exchanger asks the servers; rotate picks the first server of a question
// under options rotate (the back-end keeps the turn).
type exchanger struct {
	rotate func(n int) int // the first server to ask, for options rotate
}

// exchange asks conf's servers the question (name, qtype) and returns the
// first good answer: NOERROR (with or without records) or NXDOMAIN. Every
// try is bounded by conf.timeout and the whole exchange by ctx. The error
// of a failed exchange is the last server's, with the count of tries.
func (x *exchanger) exchange(ctx context.Context, conf *resolvConf, timeout time.Duration, name string, qtype uint16) (*dns.Msg, error) {
	n := len(conf.servers)
	first := 0
	if conf.rotate && n > 1 {
		first = x.rotate(n)
	}
	var errs []error
	tries := 0
	for a := 0; a < conf.attempts; a++ {
		for i := range n {
			srv := conf.servers[(first+i)%n]
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			tries++
			m, err := x.try(ctx, srv, conf.useVC, timeout, name, qtype)
			if err == nil {
				return m, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			errs = append(errs, err)
		}
	}
	return nil, &exchangeError{tries: tries, errs: errs}
}

// exchangeError is a failed exchange: every try's error.
type exchangeError struct {
	tries int
	errs  []error
}

func (e *exchangeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d tries failed: ", e.tries)
	for i, err := range e.errs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

func (e *exchangeError) Unwrap() []error { return e.errs }

// timedOut reports whether every try ended without an answer.
func (e *exchangeError) timedOut() bool {
	for _, err := range e.errs {
		if !errors.Is(err, errNoAnswer) {
			return false
		}
	}
	return true
}

// try is one question to one server: UDP (unless useVC), then TCP if the
// answer was truncated; without EDNS0 again if the server refused it.
func (x *exchanger) try(ctx context.Context, srv netip.AddrPort, useVC bool, timeout time.Duration, name string, qtype uint16) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	q := newQuery(name, qtype, true)
	var m *dns.Msg
	var err error
	if !useVC {
		m, err = x.udp(ctx, srv, q, timeout)
		if err == nil && m.Rcode == dns.RcodeFormatError && m.IsEdns0() == nil {
			// A server that does not speak EDNS0 (RFC 6891 section 7).
			q = newQuery(name, qtype, false)
			m, err = x.udp(ctx, srv, q, timeout)
		}
	}
	if useVC || (err == nil && m.Truncated) {
		m, err = x.tcp(ctx, srv, q, timeout)
	}
	if err != nil {
		return nil, err
	}
	switch m.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return m, nil
	}
	return nil, &serverError{server: srv, rcode: m.Rcode}
}

func newQuery(name string, qtype uint16, edns bool) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype) // also a fresh random ID
	q.RecursionDesired = true
	if edns {
		q.SetEdns0(ednsSize, false)
	}
	return q
}

// udp sends q from a fresh socket (a new random source port per question)
// connected to srv, so the kernel drops datagrams from any other address.
// A datagram with another ID (a late answer to an earlier question, or a
// guess) is ignored and the wait goes on; one with our ID that does not
// parse, is larger than we allowed, or answers another question ends the
// try with an answerError.
func (x *exchanger) udp(ctx context.Context, srv netip.AddrPort, q *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", srv.String())
	if err != nil {
		return nil, fmt.Errorf("udp %v: %w", srv, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	out, err := q.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack question: %w", err)
	}
	if _, err := c.Write(out); err != nil {
		return nil, fmt.Errorf("udp %v: %w", srv, err)
	}
	buf := make([]byte, maxUDPAnswer+1)
	ignored := 0
	for {
		n, err := c.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || ctx.Err() != nil {
				if cerr := context.Cause(ctx); cerr != nil && !errors.Is(cerr, context.DeadlineExceeded) {
					return nil, cerr
				}
				return nil, noAnswer(srv, "udp", timeout, ignored)
			}
			// ECONNREFUSED and the like: nothing listens there.
			return nil, fmt.Errorf("udp %v: %w", srv, err)
		}
		if n < 2 || binary.BigEndian.Uint16(buf) != q.Id {
			ignored++
			continue
		}
		if n > maxUDPAnswer {
			return nil, &answerError{srv, fmt.Sprintf("oversized: more than the %d bytes we advertised", maxUDPAnswer)}
		}
		return checkAnswer(srv, q, buf[:n])
	}
}

func noAnswer(srv netip.AddrPort, proto string, timeout time.Duration, ignored int) error {
	extra := ""
	if ignored > 0 {
		extra = fmt.Sprintf(" (ignored %d datagrams with the wrong ID)", ignored)
	}
	return fmt.Errorf("%s %v: %w within %v%s", proto, srv, errNoAnswer, timeout, extra)
}

// tcp asks srv over TCP: two-byte length, then the message (RFC 1035
// 4.2.2). A wrong ID here is a bad answer: the connection is ours alone.
func (x *exchanger) tcp(ctx context.Context, srv netip.AddrPort, q *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", srv.String())
	if err != nil {
		if ctx.Err() != nil {
			return nil, noAnswer(srv, "tcp", timeout, 0)
		}
		return nil, fmt.Errorf("tcp %v: %w", srv, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	out, err := q.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack question: %w", err)
	}
	msg := make([]byte, 2+len(out))
	binary.BigEndian.PutUint16(msg, uint16(len(out)))
	copy(msg[2:], out)
	if _, err := c.Write(msg); err != nil {
		return nil, fmt.Errorf("tcp %v: %w", srv, err)
	}
	var hdr [2]byte
	if _, err := readFull(c, hdr[:]); err != nil {
		return nil, tcpReadErr(ctx, srv, timeout, err)
	}
	buf := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := readFull(c, buf); err != nil {
		return nil, tcpReadErr(ctx, srv, timeout, err)
	}
	if len(buf) < 2 || binary.BigEndian.Uint16(buf) != q.Id {
		return nil, &answerError{srv, "over TCP with the wrong ID"}
	}
	return checkAnswer(srv, q, buf)
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func tcpReadErr(ctx context.Context, srv netip.AddrPort, timeout time.Duration, err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || ctx.Err() != nil {
		return noAnswer(srv, "tcp", timeout, 0)
	}
	return &answerError{srv, fmt.Sprintf("tcp answer cut short: %v", err)}
}

// checkAnswer parses an answer with our ID and checks that it answers q:
// a response, to our one question (name without case, type, class). What
// fails is an answerError naming the server.
func checkAnswer(srv netip.AddrPort, q *dns.Msg, b []byte) (*dns.Msg, error) {
	m, err := parseAnswer(b)
	if err != nil {
		return nil, &answerError{srv, err.Error()}
	}
	if !m.Response {
		return nil, &answerError{srv, "a query, not a response"}
	}
	if len(m.Question) != 1 {
		return nil, &answerError{srv, fmt.Sprintf("%d questions, want 1", len(m.Question))}
	}
	got, want := m.Question[0], q.Question[0]
	if got.Qtype != want.Qtype || got.Qclass != want.Qclass || !strings.EqualFold(got.Name, want.Name) {
		return nil, &answerError{srv, fmt.Sprintf("answers %s %s, not %s %s",
			got.Name, dns.TypeToString[got.Qtype], want.Name, dns.TypeToString[want.Qtype])}
	}
	return m, nil
}

// parseAnswer is the parsing path every byte from a server goes through
// (fuzzed by FuzzParseAnswer): miekg/dns's unpacking, plus what makes an
// answer usable, extracted by answerOf.
func parseAnswer(b []byte) (*dns.Msg, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return nil, fmt.Errorf("malformed: %v", err)
	}
	return m, nil
}
