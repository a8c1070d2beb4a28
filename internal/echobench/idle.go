package echobench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

// IdleConfig is the idle-connection memory benchmark: how many connections
// each server must hold, and how long they idle before its memory is read.
type IdleConfig struct {
	Servers []ServerSpec
	Conns   int
	// Settle is how long the connections idle, after every one has echoed,
	// before the server's memory is read; 0 means 2 s. It gives a runtime
	// that frees lazily (Go's scavenger, a Python arena) a moment to do so.
	Settle   time.Duration
	Progress io.Writer
	// TLS, when set, makes every connection a TLS client with this
	// configuration (the servers must then serve TLS).
	TLS *tls.Config
}

// IdleRow is one server holding Conns idle connections.
type IdleRow struct {
	Server string `json:"server"`
	Conns  int    `json:"conns"`
	// Echoed counts connections that were accepted and echoed one message.
	Echoed int `json:"echoed"`
	// BeforeKiB is the server's resident memory (with its child processes)
	// listening with no connection; IdleKiB with Echoed idle connections.
	BeforeKiB int64 `json:"rss_before_kib"`
	IdleKiB   int64 `json:"rss_idle_kib"`
	// IdlePssKiB is the proportional set size with the connections: pages
	// shared with other processes count by share, so the executable's pages,
	// which the plugin placement maps twice (host and plugin run the same
	// binary) and VmRSS counts twice, count once. Zero where the kernel has
	// no smaps_rollup.
	IdlePssKiB int64 `json:"pss_idle_kib"`
	// PerConnKiB is (IdleKiB - BeforeKiB) / Echoed.
	PerConnKiB float64 `json:"kib_per_conn"`
	// TLS: the connections spoke TLS (bench idle --tls).
	TLS   bool   `json:"tls,omitempty"`
	Error string `json:"error,omitempty"`
}

// idleMessage is what each connection sends once; it names the connection so
// an echo delivered on the wrong connection is caught too.
func idleMessage(i int) []byte { return []byte(fmt.Sprintf("idle %08d\n", i)) }

// RunIdle starts the servers one at a time, reads each one's resident
// memory, has it accept cfg.Conns connections that each echo one message,
// lets them idle, reads its memory again, then closes the connections and
// stops the server. One server at a time, because the bench process holds
// the client side of every connection and the descriptor limit is counted
// per process.
func RunIdle(ctx context.Context, cfg IdleConfig) ([]IdleRow, error) {
	if cfg.Conns < 1 {
		return nil, fmt.Errorf("idle: %d connections: %w", cfg.Conns, syscall.EINVAL)
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 2 * time.Second
	}
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	// The servers inherit the raised limit: each needs Conns descriptors
	// plus a few of its own, as does this process for the client side.
	if err := raiseNoFile(cfg.Conns + 64); err != nil {
		return nil, err
	}
	rows := make([]IdleRow, 0, len(cfg.Servers))
	for _, spec := range cfg.Servers {
		row := IdleRow{Server: spec.Name, Conns: cfg.Conns, TLS: cfg.TLS != nil}
		if err := measureIdle(ctx, spec, cfg, &row); err != nil {
			if ctx.Err() != nil {
				return rows, ctx.Err()
			}
			row.Error = err.Error()
			fmt.Fprintf(progress, "  %-22s failed: %v\n", spec.Name, err)
		} else {
			fmt.Fprintf(progress, "  %-22s %6d conns  rss %7.1f → %7.1f MiB  %6.2f KiB/conn\n",
				spec.Name, row.Echoed, float64(row.BeforeKiB)/1024, float64(row.IdleKiB)/1024, row.PerConnKiB)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func measureIdle(ctx context.Context, spec ServerSpec, cfg IdleConfig, row *IdleRow) error {
	s, err := start(ctx, spec, -1)
	if err != nil {
		return err
	}
	defer s.stop()
	pid := s.cmd.Process.Pid
	// A moment for a server that starts helpers (the plugin placement) or
	// finishes initialising after it printed LISTENING.
	if err := sleepCtx(ctx, 300*time.Millisecond); err != nil {
		return err
	}
	if row.BeforeKiB, err = processTreeRSS(pid); err != nil {
		return err
	}
	conns, err := openIdle(ctx, s.addr, cfg.Conns, cfg.TLS)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	row.Echoed = len(conns)
	if err != nil {
		return err
	}
	if err := sleepCtx(ctx, cfg.Settle); err != nil {
		return err
	}
	if row.IdleKiB, err = processTreeRSS(pid); err != nil {
		return err
	}
	row.IdlePssKiB, _ = processTreeMem(pid, processPSS)
	row.PerConnKiB = float64(row.IdleKiB-row.BeforeKiB) / float64(row.Echoed)
	// The server must still be serving: an idle connection that no longer
	// echoes would mean it was dropped, and its memory with it.
	for _, i := range []int{0, len(conns) / 2, len(conns) - 1} {
		if err := echoOnce(conns[i], idleMessage(i)); err != nil {
			return fmt.Errorf("connection %d after idling: %w", i, err)
		}
	}
	return nil
}

// openIdle opens n connections, a few at a time so the server's accept
// queue never overflows, and has each echo one message. It returns the
// connections that echoed, in order, and the first failure.
func openIdle(ctx context.Context, addr string, n int, tlsCfg *tls.Config) ([]net.Conn, error) {
	const parallel = 32
	conns := make([]net.Conn, n)
	errs := make([]error, parallel)
	var wg sync.WaitGroup
	for w := range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 10 * time.Second}
			for i := w; i < n; i += parallel {
				if ctx.Err() != nil {
					errs[w] = ctx.Err()
					return
				}
				c, err := d.DialContext(ctx, "tcp", addr)
				if err == nil && tlsCfg != nil {
					c, err = handshake(ctx, c, tlsCfg)
				}
				if err != nil {
					errs[w] = fmt.Errorf("connection %d of %d to %s: %w", i+1, n, addr, err)
					return
				}
				if err := echoOnce(c, idleMessage(i)); err != nil {
					c.Close()
					errs[w] = fmt.Errorf("connection %d of %d: %w", i+1, n, err)
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	// Keep a prefix-free list of what is open, so the caller closes all.
	open := conns[:0]
	for _, c := range conns {
		if c != nil {
			open = append(open, c)
		}
	}
	for _, err := range errs {
		if err != nil {
			return open, err
		}
	}
	return open, nil
}

func echoOnce(c net.Conn, msg []byte) error {
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo %q for %q: %w", got, msg, ErrMismatch)
	}
	return c.SetDeadline(time.Time{})
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// raiseNoFile lifts the soft descriptor limit to the hard one, for this
// process and the servers it starts, and checks that need descriptors fit.
func raiseNoFile(need int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("idle: getrlimit: %w", err)
	}
	// Always set, even when the soft limit already looks raised: the Go
	// runtime raises it at start-up but restores the original in children
	// unless the program sets the limit itself.
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("idle: raise the descriptor limit to %d: %w", lim.Max, err)
	}
	if uint64(need) > lim.Cur {
		return fmt.Errorf("idle: %d descriptors needed per process, the limit is %d: %w", need, lim.Cur, syscall.EMFILE)
	}
	return nil
}

// processTreeRSS returns the resident memory of pid and its descendants in
// KiB (VmRSS of /proc/<pid>/status: anonymous, file and shared pages the
// process maps, so a shared library counts in every process that maps it).
func processTreeRSS(pid int) (int64, error) { return processTreeMem(pid, processRSS) }

func processTreeMem(pid int, mem func(int) (int64, error)) (int64, error) {
	total, err := mem(pid)
	if err != nil {
		return 0, err
	}
	for _, child := range children(pid) {
		if c, err := processTreeMem(child, mem); err == nil {
			total += c
		}
	}
	return total, nil
}

func processRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss of %d: %w", pid, err)
	}
	return parseKiB(b, "VmRSS:")
}

func processPSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, fmt.Errorf("pss of %d: %w", pid, err)
	}
	return parseKiB(b, "Pss:")
}

// parseKiB finds the line "key   N kB" of a /proc file (status,
// smaps_rollup) and returns N.
func parseKiB(b []byte, key string) (int64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, key)
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("malformed %s line %q", key, line)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("malformed %s line %q", key, line)
		}
		return n, nil
	}
	return 0, fmt.Errorf("no %s line (a kernel thread or a zombie?)", key)
}

// IdleTargetKiB is issue 4's memory target: 10 000 idle connections held in
// at most 40 MB of resident memory, the runtime's own baseline included.
const (
	IdleTargetConns = 10000
	IdleTargetKiB   = 40 * 1000 * 1000 / 1024
)

// WriteIdleTable prints one line per server: resident memory before and
// with the idle connections, the cost per connection, and ratios to the
// floor and to uvloop where they were measured.
func WriteIdleTable(w io.Writer, rows []IdleRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tconns\techoed\tRSS before MiB\tRSS idle MiB\tKiB/conn\tPSS idle MiB\tRSS ×floor\tRSS ×uvloop\tKiB/conn ×uvloop\t")
	ref := func(name string) *IdleRow {
		for i := range rows {
			if rows[i].Server == name && rows[i].Error == "" {
				return &rows[i]
			}
		}
		return nil
	}
	floor, uv := ref("floor"), ref("uvloop")
	ratio := func(v float64, base *IdleRow, f func(*IdleRow) float64) string {
		if base == nil || f(base) <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", v/f(base))
	}
	rss := func(r *IdleRow) float64 { return float64(r.IdleKiB) }
	per := func(r *IdleRow) float64 { return r.PerConnKiB }
	for i := range rows {
		r := &rows[i]
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t%d\t%d\tfailed: %s\t\t\t\t\t\t\t\n", r.Server, r.Conns, r.Echoed, r.Error)
			continue
		}
		pss := "-"
		if r.IdlePssKiB > 0 {
			pss = fmt.Sprintf("%.1f", float64(r.IdlePssKiB)/1024)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%.2f\t%s\t%s\t%s\t%s\t\n", r.Server, r.Conns, r.Echoed,
			float64(r.BeforeKiB)/1024, float64(r.IdleKiB)/1024, r.PerConnKiB, pss,
			ratio(rss(r), floor, rss), ratio(rss(r), uv, rss), ratio(per(r), uv, per))
	}
	tw.Flush()
	goNet := ref("go-net")
	for _, r := range rows {
		if r.Error != "" || r.Conns != IdleTargetConns || !strings.HasPrefix(r.Server, "loopkernel") {
			continue
		}
		if r.TLS {
			// Issue 8's target: under half of Go's crypto/tls server.
			if goNet != nil {
				verdict := "meets"
				if 2*r.IdleKiB >= goNet.IdleKiB {
					verdict = "MISSES"
				}
				fmt.Fprintf(w, "TLS target (idle RSS below half of go-net's): %s %s it at %.2f× go-net\n", r.Server, verdict, float64(r.IdleKiB)/float64(goNet.IdleKiB))
			}
			continue
		}
		verdict := "meets"
		if r.IdleKiB > IdleTargetKiB {
			verdict = "MISSES"
		}
		fmt.Fprintf(w, "issue 4 target (%d idle connections in <= 40 MB RSS): %s %s it at %.1f MB RSS (%.1f MB PSS)\n",
			IdleTargetConns, r.Server, verdict, float64(r.IdleKiB)*1024/1e6, float64(r.IdlePssKiB)*1024/1e6)
	}
}

// WriteIdleJSON writes the rows for machines.
func WriteIdleJSON(w io.Writer, rows []IdleRow) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}
