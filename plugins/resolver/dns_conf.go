package resolver

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// resolvConf is what the dns back-end takes from resolv.conf(5). Only the
// settings that change what goes on the wire are kept; sortlist, inet6 and
// the other legacy options are ignored, as Go's resolver ignores them.
type resolvConf struct {
	servers  []netip.AddrPort // in file order; port 53 unless the extension below names one
	search   []string         // absolute, lower case, without the trailing dot
	ndots    int
	timeout  time.Duration // per try (one query to one server)
	attempts int           // rounds over the whole server list
	rotate   bool
	useVC    bool // TCP only
}

// Defaults of resolv.conf(5) and glibc's caps on the options.
const (
	defaultNdots    = 1
	maxNdots        = 15
	defaultTimeout  = 5 * time.Second
	maxTimeout      = 30 * time.Second
	defaultAttempts = 2
	maxAttempts     = 5
	maxNameservers  = 3 // glibc's MAXNS: later nameserver lines are ignored
	maxSearch       = 6 // glibc's MAXDNSRCH
)

// parseResolvConf parses resolv.conf text. Malformed lines and options are
// skipped, as the C library does: a file edited by hand must not stop name
// resolution. hostname supplies the default search domain (its part after
// the first dot) when the file names neither search nor domain.
//
// One extension: a nameserver may carry a port ("127.0.0.1:5353",
// "[::1]:5353"). The C library rejects that form, so a file using it is for
// this back-end only; the tests and `loopkernel bench resolve` use it to
// reach servers they start on unprivileged ports.
func parseResolvConf(data []byte, hostname string) *resolvConf {
	c := &resolvConf{ndots: defaultNdots, timeout: defaultTimeout, attempts: defaultAttempts}
	var search []string
	searchSet := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) < 2 || len(c.servers) >= maxNameservers {
				continue
			}
			if ap, ok := parseNameserver(f[1]); ok {
				c.servers = append(c.servers, ap)
			}
		case "domain":
			// The last of domain and search wins, as in glibc.
			if len(f) >= 2 {
				search, searchSet = []string{f[1]}, true
			}
		case "search":
			search, searchSet = f[1:], true
		case "options":
			for _, o := range f[1:] {
				c.option(o)
			}
		}
	}
	if !searchSet {
		if _, dom, ok := strings.Cut(hostname, "."); ok && dom != "" {
			search = []string{dom}
		}
	}
	for _, s := range search {
		s = strings.ToLower(strings.TrimSuffix(s, "."))
		if s == "" || len(c.search) >= maxSearch {
			continue
		}
		c.search = append(c.search, s)
	}
	if len(c.servers) == 0 {
		// glibc's default: a server on this host.
		c.servers = []netip.AddrPort{
			netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 53),
			netip.AddrPortFrom(netip.IPv6Loopback(), 53),
		}
	}
	return c
}

func parseNameserver(s string) (netip.AddrPort, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Port() != 0 {
		return ap, true
	}
	return netip.AddrPort{}, false
}

func (c *resolvConf) option(o string) {
	name, val, hasVal := strings.Cut(o, ":")
	n, err := strconv.Atoi(val)
	numeric := hasVal && err == nil && n >= 0
	switch name {
	case "ndots":
		if numeric {
			c.ndots = min(n, maxNdots)
		}
	case "timeout":
		if numeric && n > 0 {
			c.timeout = min(time.Duration(n)*time.Second, maxTimeout)
		}
	case "attempts":
		if numeric && n > 0 {
			c.attempts = min(n, maxAttempts)
		}
	case "rotate":
		c.rotate = true
	case "use-vc", "usevc", "tcp":
		c.useVC = true
	case "edns0":
		// EDNS0 is always on (a server that rejects it is asked again
		// without); the option is accepted so files written for glibc parse
		// without surprises.
	}
}

// fileStamp identifies a version of a file cheaply: a changed file has a
// new modification time, size or inode (an editor that writes a new file
// and renames it over the old one changes the inode).
type fileStamp struct {
	mtime int64
	size  int64
	ino   uint64
	ok    bool // the file existed
}

func stampOf(path string) fileStamp {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileStamp{}
	}
	return fileStamp{mtime: st.Mtim.Nano(), size: st.Size, ino: st.Ino, ok: true}
}

// watchedFile is a file parsed into a T and parsed again when it changes.
// A lookup calls get, which looks at the file (one stat) at most once per
// interval, so a busy resolver pays one system call per interval, not per
// lookup, and an edit is seen within the interval, as with Go's resolver
// (every 5 s) and glibc (which stats resolv.conf before every query).
type watchedFile[T any] struct {
	path     string
	interval time.Duration
	parse    func([]byte) T
	changed  func() // called after a changed file was parsed again; may be nil

	cur      atomic.Pointer[T]
	next     atomic.Int64 // unix ns of the next stat
	mu       sync.Mutex   // one re-read at a time
	stamp    fileStamp
	checking atomic.Bool
}

func newWatchedFile[T any](path string, interval time.Duration, parse func([]byte) T, changed func()) *watchedFile[T] {
	w := &watchedFile[T]{path: path, interval: interval, parse: parse, changed: changed}
	w.reload(true)
	return w
}

// get returns the current parse, looking for a change first when the
// interval has passed. Only one caller stats the file; the others use what
// is there.
func (w *watchedFile[T]) get() *T {
	if now := time.Now().UnixNano(); now >= w.next.Load() && w.checking.CompareAndSwap(false, true) {
		w.next.Store(now + int64(w.interval))
		w.reload(false)
		w.checking.Store(false)
	}
	return w.cur.Load()
}

// peek returns the current parse without looking at the file, and false
// when the file is due to be looked at (a caller that must not do I/O then
// takes the slow path, whose get does it).
func (w *watchedFile[T]) peek() (*T, bool) {
	if time.Now().UnixNano() >= w.next.Load() {
		return nil, false
	}
	return w.cur.Load(), true
}

// reload parses the file again if its stamp changed (or always, first). A
// missing file parses as empty: resolv.conf's defaults, no hosts.
func (w *watchedFile[T]) reload(first bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := stampOf(w.path)
	if !first && st == w.stamp {
		return
	}
	var data []byte
	if st.ok {
		var err error
		if data, err = os.ReadFile(w.path); err != nil {
			data = nil
		}
	}
	v := w.parse(data)
	w.stamp = st
	w.cur.Store(&v)
	if !first && w.changed != nil {
		w.changed()
	}
}
