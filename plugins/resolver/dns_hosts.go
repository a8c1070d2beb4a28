package resolver

import (
	"bytes"
	"net/netip"
	"strings"
)

// hostsTable is hosts(5) parsed for both directions: names to addresses
// (every line that names the host, in file order) and addresses to the
// canonical name (the first name of the first line with that address),
// which is what glibc's files back-end answers.
type hostsTable struct {
	byName map[string]hostsEntry
	byAddr map[netip.Addr]string
}

type hostsEntry struct {
	addrs []netip.Addr
	canon string // the first name on the first line naming the host
}

// parseHosts parses hosts(5) text. Names are matched without case and
// without a trailing dot; an address with a zone (fe80::1%eth0) keeps it.
// Malformed lines are skipped.
func parseHosts(data []byte) *hostsTable {
	t := &hostsTable{byName: make(map[string]hostsEntry), byAddr: make(map[netip.Addr]string)}
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(string(line))
		if len(f) < 2 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		a = a.Unmap()
		names := make([]string, 0, len(f)-1)
		for _, name := range f[1:] {
			if checkName(name) == nil { // ".", "a..b", 300 bytes: no name a lookup could ask for
				names = append(names, name)
			}
		}
		if len(names) == 0 {
			continue
		}
		canon := strings.TrimSuffix(names[0], ".")
		if _, dup := t.byAddr[a.WithZone("")]; !dup {
			t.byAddr[a.WithZone("")] = canon
		}
		for _, name := range names {
			key := hostKey(name)
			e := t.byName[key]
			if e.canon == "" {
				e.canon = canon
			}
			if !containsAddr(e.addrs, a) {
				e.addrs = append(e.addrs, a)
			}
			t.byName[key] = e
		}
	}
	return t
}

func hostKey(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

func containsAddr(s []netip.Addr, a netip.Addr) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}
