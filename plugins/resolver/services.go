package resolver

import (
	"bytes"
	"os"
	"strconv"
	"sync"
)

// servicesPath is the services database getnameinfo reads. Go's net package
// maps names to ports (net.LookupPort) but offers no reverse lookup, so the
// port -> name direction parses the file itself.
const servicesPath = "/etc/services"

// serviceTable maps a port to its first-listed service name, per protocol.
type serviceTable struct {
	tcp map[uint16]string
	udp map[uint16]string
}

// byPort returns the service name of port for "tcp" or "udp".
func (t *serviceTable) byPort(proto string, port uint16) (string, bool) {
	m := t.tcp
	if proto == "udp" {
		m = t.udp
	}
	name, ok := m[port]
	return name, ok
}

var (
	servicesOnce sync.Once
	services     *serviceTable
)

// loadServices reads the services database once per process; a missing or
// unreadable file leaves the table empty, so names fall back to numbers as
// getnameinfo(3) does.
func loadServices() *serviceTable {
	servicesOnce.Do(func() {
		data, err := os.ReadFile(servicesPath)
		if err != nil {
			data = nil
		}
		services = parseServices(data)
	})
	return services
}

// parseServices parses services(5) text: "name port/proto [aliases...]
// [# comment]" per line. Malformed lines are skipped, as the C library does;
// the first name listed for a port wins.
func parseServices(data []byte) *serviceTable {
	t := &serviceTable{tcp: make(map[uint16]string), udp: make(map[uint16]string)}
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
		f := bytes.Fields(line)
		if len(f) < 2 {
			continue
		}
		portStr, proto, ok := bytes.Cut(f[1], []byte{'/'})
		if !ok {
			continue
		}
		port, err := strconv.ParseUint(string(portStr), 10, 16)
		if err != nil {
			continue
		}
		var m map[uint16]string
		switch string(proto) {
		case "tcp":
			m = t.tcp
		case "udp":
			m = t.udp
		default:
			continue
		}
		if _, dup := m[uint16(port)]; !dup {
			m[uint16(port)] = string(f[0])
		}
	}
	return t
}
