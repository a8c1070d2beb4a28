package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/loopkernel/loopkernel/internal/addrinfo"
	"github.com/loopkernel/loopkernel/sdk"
)

// DNSName is the name the project's own DNS client is registered under in
// sdk.Resolvers: `--resolver dns` in process, `--resolver plugin:dns` (or
// dns-plugin) in a plugin process.
const DNSName = "dns"

// DNSEnv names an environment variable of settings for the dns back-end
// its registered factory applies ("key=value,key=value", the keys of
// DNS.Configure). It is how a command line reaches the back-end in either
// placement: a bundled plugin inherits its host's environment.
const DNSEnv = "LOOPKERNEL_DNS"

// DNSOptions configure a DNS resolver. Zero values take the defaults listed.
type DNSOptions struct {
	// ResolvConf is the resolv.conf(5) to read. Default /etc/resolv.conf.
	ResolvConf string
	// Hosts is the hosts(5) file answered from before any query. Default
	// /etc/hosts.
	Hosts string
	// CacheSize bounds the cache in entries (one per name and record
	// type); the least recently used goes first. Default 4096; negative
	// keeps nothing (concurrent identical lookups are still merged).
	CacheSize int
	// MaxTTL caps how long any answer is kept. Default 24h.
	MaxTTL time.Duration
	// MaxNegativeTTL caps how long a negative answer (no such name, no
	// record of that type) is kept. Default 1h.
	MaxNegativeTTL time.Duration
	// Timeout, if set, replaces resolv.conf's per-try timeout (which is in
	// whole seconds).
	Timeout time.Duration
	// CheckInterval is how often ResolvConf and Hosts are looked at for a
	// change (one stat each). Default 1s.
	CheckInterval time.Duration
}

// DNS is the project's own stub resolver, an sdk.Resolver on
// github.com/miekg/dns: /etc/hosts first, then A and AAAA queries in
// parallel over UDP with EDNS0 (TCP when an answer is truncated, or with
// options use-vc) to resolv.conf's nameservers, one after the other when
// one fails, with search domains and ndots; results in RFC 6724 order;
// getnameinfo by PTR queries and the services database. Answers are cached
// for their TTL, negative ones too (RFC 2308), and concurrent lookups of one
// question share one query.
//
// It is safe for concurrent use, and holds no goroutine or descriptor
// between lookups.
type DNS struct {
	ports *Resolver // Go's resolver for what is not DNS: service names, configured families
	x     exchanger
	order *sourceFinder
	turn  atomic.Uint32 // options rotate

	mu    sync.Mutex // serialises Configure
	state atomic.Pointer[dnsState]
	cache *cache
}

// dnsState is the files being watched and the settings that go with them;
// Configure replaces it whole.
type dnsState struct {
	opts  DNSOptions
	conf  *watchedFile[*resolvConf]
	hosts *watchedFile[*hostsTable]
}

var _ sdk.CachedResolver = (*DNS)(nil)

func init() {
	sdk.Resolvers.Register(DNSName, func() (sdk.Resolver, error) {
		d := NewDNS(DNSOptions{})
		if env := os.Getenv(DNSEnv); env != "" {
			for kv := range strings.SplitSeq(env, ",") {
				k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
				if err := d.Configure(k, v); err != nil {
					return nil, fmt.Errorf("$%s: %w", DNSEnv, err)
				}
			}
		}
		return d, nil
	})
}

// NewDNS returns a DNS resolver with opts. The files are read at once, and
// again when they change; a missing file is read as empty (resolv.conf's
// defaults: a server on this host; no hosts).
func NewDNS(opts DNSOptions) *DNS {
	d := &DNS{ports: New(nil), order: newSourceFinder()}
	d.x.rotate = func(n int) int { return int(d.turn.Add(1)-1) % n }
	opts = withDefaults(opts)
	d.cache = newCache(max(opts.CacheSize, 0), opts.MaxTTL, opts.MaxNegativeTTL)
	d.state.Store(d.newState(opts))
	return d
}

func withDefaults(o DNSOptions) DNSOptions {
	if o.ResolvConf == "" {
		o.ResolvConf = "/etc/resolv.conf"
	}
	if o.Hosts == "" {
		o.Hosts = "/etc/hosts"
	}
	if o.CacheSize == 0 {
		o.CacheSize = 4096
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = 24 * time.Hour
	}
	if o.MaxNegativeTTL <= 0 {
		o.MaxNegativeTTL = time.Hour
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = time.Second
	}
	return o
}

func (d *DNS) newState(o DNSOptions) *dnsState {
	hostname, _ := os.Hostname()
	return &dnsState{
		opts: o,
		conf: newWatchedFile(o.ResolvConf, o.CheckInterval,
			func(b []byte) *resolvConf { return parseResolvConf(b, hostname) },
			d.cache.flush), // other servers may see other data
		hosts: newWatchedFile(o.Hosts, o.CheckInterval, parseHosts, nil),
	}
}

// Configure sets one option by name, as a plugin's configuration does
// (sdk/plugin.Configurer; Spec.Config on the host): resolv_conf and hosts
// (paths), cache_size (entries, 0 or negative for none), cache_max_ttl,
// negative_max_ttl, timeout and check_interval (Go durations such as
// "250ms"). Changing a file or the cache settings empties the cache.
func (d *DNS) Configure(key, value string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	o := d.state.Load().opts
	dur := func(dst *time.Duration) error {
		v, err := time.ParseDuration(value)
		if err != nil || v <= 0 {
			return fmt.Errorf("dns resolver: %s=%q: want a positive duration such as 500ms", key, value)
		}
		*dst = v
		return nil
	}
	var err error
	switch key {
	case "resolv_conf":
		o.ResolvConf = value
	case "hosts":
		o.Hosts = value
	case "cache_size":
		n, perr := strconv.Atoi(value)
		if perr != nil {
			return fmt.Errorf("dns resolver: cache_size=%q: want a number of entries", value)
		}
		o.CacheSize = n
		if n == 0 {
			o.CacheSize = -1
		}
	case "cache_max_ttl":
		err = dur(&o.MaxTTL)
	case "negative_max_ttl":
		err = dur(&o.MaxNegativeTTL)
	case "timeout":
		err = dur(&o.Timeout)
	case "check_interval":
		err = dur(&o.CheckInterval)
	default:
		return fmt.Errorf("dns resolver: no setting %q (have resolv_conf, hosts, cache_size, cache_max_ttl, negative_max_ttl, timeout, check_interval)", key)
	}
	if err != nil {
		return err
	}
	o = withDefaults(o)
	d.cache.mu.Lock()
	d.cache.max, d.cache.maxTTL, d.cache.maxNegTTL = max(o.CacheSize, 0), o.MaxTTL, o.MaxNegativeTTL
	d.cache.mu.Unlock()
	d.cache.flush()
	d.state.Store(d.newState(o))
	return nil
}

// Getaddrinfo implements sdk.Resolver. A cache hit takes the path of
// GetaddrinfoCached, which is also what a plugin process serving this
// back-end answers most lookups with.
func (d *DNS) Getaddrinfo(ctx context.Context, host, port string, hints sdk.AddrinfoHints) ([]sdk.Addrinfo, error) {
	if ai, ok := d.GetaddrinfoCached(host, port, hints); ok {
		return ai, nil
	}
	if ai, ok, err := addrinfo.Numeric(host, port, hints); ok {
		if err == nil {
			ai, err = d.ports.addrConfig(host, ai, hints)
		}
		return ai, err
	}
	sps, err := addrinfo.SockProtos(hints)
	if err != nil {
		return nil, err
	}
	portOf, err := d.ports.servicePorts(ctx, port, sps)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	canon := host
	if a, perr := netip.ParseAddr(host); perr == nil {
		addrs = []netip.Addr{a}
	} else if host == "" {
		addrs = addrinfo.EmptyHostAddrs(hints)
	} else if addrs, canon, err = d.lookupHost(ctx, host, hints); err != nil {
		return nil, err
	}
	if addrs, err = addrinfo.FilterFamily(host, addrs, hints); err != nil {
		return nil, err
	}
	if hints.Flags&sdk.AICanonName == 0 {
		canon = ""
	}
	ai := addrinfo.Expand(addrs, sps, portOf, canon)
	if len(ai) == 0 {
		return nil, &net.DNSError{Err: addrinfo.MsgService, Name: port}
	}
	return d.ports.addrConfig(host, ai, hints)
}

// GetaddrinfoCached implements sdk.CachedResolver: the answer to a name
// with a numeric port when the hosts file or the cache holds it, computed
// without I/O (the kernel calls it on the loop goroutine). A negative or
// missing answer, a file due for its check, AIAddrConfig (which asks the
// interfaces) or a service name all return false, for the slow path.
func (d *DNS) GetaddrinfoCached(host, port string, hints sdk.AddrinfoHints) ([]sdk.Addrinfo, bool) {
	if host == "" || hints.Flags&(sdk.AIAddrConfig|sdk.AINumericHost) != 0 || addrinfo.CheckHints(hints) != nil {
		return nil, false
	}
	p, numeric, err := addrinfo.NumericPort(port)
	if err != nil || !numeric {
		return nil, false
	}
	sps, err := addrinfo.SockProtos(hints)
	if err != nil || checkName(host) != nil {
		return nil, false
	}
	if mayBeNumeric(host) {
		return nil, false // the kernel answers numeric hosts; Getaddrinfo's slow path does too
	}
	st := d.state.Load()
	hosts, ok := st.hosts.peek()
	if !ok {
		return nil, false
	}
	var addrs []netip.Addr
	canon := ""
	if e, found := (*hosts).byName[hostKey(host)]; found {
		addrs, canon = append([]netip.Addr(nil), e.addrs...), e.canon
	} else {
		conf, ok := st.conf.peek()
		if !ok {
			return nil, false
		}
		if addrs, canon, ok = d.cachedHost(host, *conf, qtypesFor(hints)); !ok {
			return nil, false
		}
	}
	if !d.order.known(addrs) {
		return nil, false // sorting would ask the kernel for source addresses
	}
	d.order.sortAddrs(addrs)
	if addrs, err = addrinfo.FilterFamily(host, addrs, hints); err != nil {
		return nil, false
	}
	if hints.Flags&sdk.AICanonName == 0 {
		canon = ""
	}
	ai := addrinfo.Expand(addrs, sps, func(addrinfo.SockProto) (uint16, bool) { return p, true }, canon)
	return ai, len(ai) > 0
}

// cachedHost is lookupHost's search over the candidates from the cache
// alone: the first candidate with addresses, if every question before it
// is cached as negative.
func (d *DNS) cachedHost(host string, conf *resolvConf, qtypes []uint16) ([]netip.Addr, string, bool) {
	for _, name := range candidates(host, conf) {
		var addrs []netip.Addr
		canon := ""
		for _, qt := range qtypes {
			ans, hit := d.cache.peek(cacheKey{name, qt})
			if !hit {
				return nil, "", false
			}
			if !ans.negative() {
				addrs = append(addrs, ans.addrs...)
				if canon == "" {
					canon = ans.canon
				}
			}
		}
		if len(addrs) > 0 {
			return addrs, canon, true
		}
	}
	return nil, "", false
}

// qtypesFor is which record types a lookup with hints asks for.
func qtypesFor(hints sdk.AddrinfoHints) []uint16 {
	switch {
	case hints.Family == syscall.AF_INET:
		return []uint16{dns.TypeA}
	case hints.Family == syscall.AF_INET6 && hints.Flags&sdk.AIV4Mapped == 0:
		return []uint16{dns.TypeAAAA}
	}
	return []uint16{dns.TypeA, dns.TypeAAAA}
}

// lookupHost answers a host name: from the hosts file, as localhost
// (RFC 6761), or from the servers through the cache.
func (d *DNS) lookupHost(ctx context.Context, host string, hints sdk.AddrinfoHints) ([]netip.Addr, string, error) {
	if err := checkName(host); err != nil {
		return nil, "", err
	}
	st := d.state.Load()
	key := hostKey(host)
	if e, ok := (*st.hosts.get()).byName[key]; ok {
		addrs := append([]netip.Addr(nil), e.addrs...)
		d.order.sortAddrs(addrs)
		return addrs, e.canon, nil
	}
	if key == "localhost" || strings.HasSuffix(key, ".localhost") {
		addrs := []netip.Addr{netip.IPv6Loopback(), netip.AddrFrom4([4]byte{127, 0, 0, 1})}
		d.order.sortAddrs(addrs)
		return addrs, key, nil
	}
	conf := *st.conf.get()
	timeout := conf.timeout
	if st.opts.Timeout > 0 {
		timeout = st.opts.Timeout
	}
	qtypes := qtypesFor(hints)
	var failure error // a server problem, which outranks "no such name"
	for _, name := range candidates(host, conf) {
		var answers [2]*answer
		var errs [2]error
		missing := 0
		for i, qt := range qtypes {
			var hit bool
			if answers[i], hit = d.cache.peek(cacheKey{name, qt}); !hit {
				missing++
			}
		}
		if missing > 0 {
			// The misses are asked in parallel; one alone needs no goroutine.
			var wg sync.WaitGroup
			for i, qt := range qtypes {
				if answers[i] != nil {
					continue
				}
				if missing == 1 {
					answers[i], errs[i] = d.query(ctx, conf, timeout, name, qt)
					break
				}
				wg.Go(func() { answers[i], errs[i] = d.query(ctx, conf, timeout, name, qt) })
			}
			wg.Wait()
		}
		var addrs []netip.Addr
		canon := ""
		for i := range qtypes {
			if errs[i] != nil {
				if ctx.Err() != nil {
					return nil, "", ctx.Err()
				}
				failure = errs[i]
				continue
			}
			if !answers[i].negative() {
				addrs = append(addrs, answers[i].addrs...)
				if canon == "" {
					canon = answers[i].canon
				}
			}
		}
		if len(addrs) > 0 {
			d.order.sortAddrs(addrs)
			return addrs, canon, nil
		}
	}
	if failure != nil {
		return nil, "", lookupError(host, failure)
	}
	return nil, "", &net.DNSError{Err: addrinfo.MsgNoName, Name: host, IsNotFound: true}
}

// query answers one question through the cache.
func (d *DNS) query(ctx context.Context, conf *resolvConf, timeout time.Duration, name string, qtype uint16) (*answer, error) {
	return d.cache.lookup(ctx, cacheKey{name, qtype}, func(ctx context.Context) (*answer, error) {
		m, err := d.x.exchange(ctx, conf, timeout, name, qtype)
		if err != nil {
			return nil, err
		}
		return answerOf(m, name, qtype), nil
	})
}

// lookupError turns a failed exchange into the *net.DNSError the resolver
// family reports (it crosses the plugin wire intact): the servers' errors
// in the text, timed out or temporary as it was.
func lookupError(host string, err error) error {
	de := &net.DNSError{Err: err.Error(), Name: host, IsTemporary: true, UnwrapErr: err}
	var xe *exchangeError
	if errors.As(err, &xe) {
		de.IsTimeout = xe.timedOut()
		if len(xe.errs) > 0 {
			var ae *answerError
			var se *serverError
			switch last := xe.errs[len(xe.errs)-1]; {
			case errors.As(last, &ae):
				de.Server = ae.server.String()
			case errors.As(last, &se):
				de.Server = se.server.String()
			}
		}
	}
	return de
}

// The limits of RFC 1035 section 2.3.4 on a name, in its wire form.
const (
	maxNameLen  = 255
	maxLabelLen = 63
)

// checkName refuses a name no server could be asked about, before any
// query: over 255 bytes on the wire, a label over 63, an empty label.
func checkName(host string) error {
	name := strings.TrimSuffix(host, ".")
	wire := len(name) + 2 // a length byte before the first label, the root's zero byte
	if wire > maxNameLen {
		return &net.DNSError{Err: fmt.Sprintf("name too long: %d bytes on the wire, the limit is %d", wire, maxNameLen),
			Name: clipName(host), IsNotFound: true}
	}
	for l := range strings.SplitSeq(name, ".") {
		switch {
		case l == "":
			return &net.DNSError{Err: "empty label in name", Name: host, IsNotFound: true}
		case len(l) > maxLabelLen:
			return &net.DNSError{Err: fmt.Sprintf("label of %d bytes, the limit is %d", len(l), maxLabelLen),
				Name: clipName(host), IsNotFound: true}
		}
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return &net.DNSError{Err: "not a domain name", Name: clipName(host), IsNotFound: true}
	}
	return nil
}

// mayBeNumeric reports whether host could be an IP address: it has a colon
// or holds only digits and dots. It spares a name the error netip.ParseAddr
// would allocate.
func mayBeNumeric(host string) bool {
	for i := 0; i < len(host); i++ {
		switch c := host[i]; {
		case c == ':':
			return true
		case c != '.' && (c < '0' || c > '9'):
			return false
		}
	}
	return true
}

func clipName(s string) string {
	if len(s) > 64 {
		return s[:61] + "..."
	}
	return s
}

// candidates are the names to ask, in order (resolv.conf(5)): a name
// ending in a dot as it is; one with at least ndots dots as it is, then
// with each search domain; one with fewer with each search domain, then
// as it is.
func candidates(host string, conf *resolvConf) []string {
	if strings.HasSuffix(host, ".") {
		return []string{strings.ToLower(host)}
	}
	name := strings.ToLower(host)
	out := make([]string, 0, len(conf.search)+1)
	asIs := strings.Count(name, ".") >= conf.ndots
	if asIs {
		out = append(out, name+".")
	}
	for _, s := range conf.search {
		if len(name)+1+len(s)+2 <= maxNameLen {
			out = append(out, name+"."+s+".")
		}
	}
	if !asIs {
		out = append(out, name+".")
	}
	return out
}

// Getnameinfo implements sdk.Resolver: the hosts file, then a PTR query.
// Without NINameReqd an address with no name (or whose servers fail)
// comes back in numeric form, as getnameinfo(3) does.
func (d *DNS) Getnameinfo(ctx context.Context, addr netip.AddrPort, flags int) (sdk.NameInfo, error) {
	const known = sdk.NINumericHost | sdk.NINumericServ | sdk.NINoFQDN | sdk.NINameReqd | sdk.NIDgram
	if flags&^known != 0 {
		return sdk.NameInfo{}, &net.DNSError{Err: addrinfo.MsgBadFlags, Name: fmt.Sprintf("%#x", flags)}
	}
	if !addr.IsValid() {
		return sdk.NameInfo{}, &net.DNSError{Err: addrinfo.MsgNoName, Name: addr.String(), IsNotFound: true}
	}
	host, err := d.hostName(ctx, addr.Addr(), flags)
	if err != nil {
		return sdk.NameInfo{}, err
	}
	return sdk.NameInfo{Host: host, Service: serviceName(addr.Port(), flags)}, nil
}

func (d *DNS) hostName(ctx context.Context, a netip.Addr, flags int) (string, error) {
	numeric := a.String()
	if flags&sdk.NINumericHost != 0 {
		return numeric, nil
	}
	bare := a.Unmap().WithZone("")
	st := d.state.Load()
	name, ok := (*st.hosts.get()).byAddr[bare]
	var failure error
	if !ok {
		rev, err := dns.ReverseAddr(bare.String())
		if err != nil {
			return "", &net.DNSError{Err: err.Error(), Name: numeric}
		}
		conf := *st.conf.get()
		timeout := conf.timeout
		if st.opts.Timeout > 0 {
			timeout = st.opts.Timeout
		}
		ans, err := d.query(ctx, conf, timeout, rev, dns.TypePTR)
		switch {
		case err != nil && ctx.Err() != nil:
			return "", ctx.Err()
		case err != nil:
			failure = err
		case len(ans.names) > 0:
			name, ok = ans.names[0], true
		}
	}
	if !ok {
		if flags&sdk.NINameReqd != 0 {
			if failure != nil {
				return "", lookupError(numeric, failure)
			}
			return "", &net.DNSError{Err: addrinfo.MsgNoName, Name: numeric, IsNotFound: true}
		}
		return numeric, nil
	}
	if flags&sdk.NINoFQDN != 0 {
		name, _, _ = strings.Cut(name, ".")
	}
	return name, nil
}
