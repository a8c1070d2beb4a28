package echobench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// LoadConfig is one load: how many connections, how big a message, how many
// messages in flight per connection, and for how long.
type LoadConfig struct {
	Addr     string
	Conns    int
	Size     int
	Pipeline int
	Warmup   time.Duration
	Duration time.Duration
}

// LoadResult is what one load measured in its window.
type LoadResult struct {
	Requests int64
	Window   time.Duration
	P50, P99 time.Duration
}

// ErrMismatch: the server echoed bytes that differ from what was sent.
var ErrMismatch = errors.New("echoed bytes differ from the request")

// Load connects cfg.Conns clients, runs them through the warm-up, calls
// window(true) as the measured window opens and window(false) as it closes,
// and returns what was measured. Each connection writes Pipeline messages,
// reads them all back and checks every byte, and repeats; the latency of a
// message is the time from writing its batch to reading its last byte.
func Load(ctx context.Context, cfg LoadConfig, window func(open bool)) (LoadResult, error) {
	if cfg.Pipeline < 1 {
		cfg.Pipeline = 1
	}
	// A message is a slice of a patterned base at an offset that changes
	// with every request, so a server that echoes stale or shifted data is
	// caught by a plain bytes.Equal.
	base := make([]byte, cfg.Size+251)
	for i := range base {
		base[i] = byte(i*7 + i/251)
	}
	conns := make([]net.Conn, 0, cfg.Conns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	d := net.Dialer{Timeout: 5 * time.Second}
	for i := 0; i < cfg.Conns; i++ {
		c, err := d.DialContext(ctx, "tcp", cfg.Addr)
		if err != nil {
			return LoadResult{}, fmt.Errorf("load: connection %d of %d to %s: %w", i+1, cfg.Conns, cfg.Addr, err)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		conns = append(conns, c)
	}

	var measuring atomic.Bool
	var count atomic.Int64
	stop := make(chan struct{})
	hists := make([]*hist, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		hists[i] = new(hist)
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			errs[i] = client(c, cfg, base, i, &measuring, &count, hists[i], stop)
		}(i, c)
	}

	fail := func(err error) (LoadResult, error) {
		close(stop)
		for _, c := range conns {
			c.SetDeadline(time.Now())
		}
		wg.Wait()
		return LoadResult{}, err
	}
	select {
	case <-time.After(cfg.Warmup):
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	if window != nil {
		window(true)
	}
	start := time.Now()
	measuring.Store(true)
	select {
	case <-time.After(cfg.Duration):
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	measuring.Store(false)
	elapsed := time.Since(start)
	if window != nil {
		window(false)
	}
	n := count.Load()
	close(stop)
	for _, c := range conns {
		c.SetDeadline(time.Now().Add(2 * time.Second))
	}
	wg.Wait()
	var all hist
	for i, h := range hists {
		if errs[i] != nil {
			return LoadResult{}, fmt.Errorf("load: connection %d: %w", i, errs[i])
		}
		all.merge(h)
	}
	return LoadResult{Requests: n, Window: elapsed, P50: all.quantile(0.50), P99: all.quantile(0.99)}, nil
}

func client(c net.Conn, cfg LoadConfig, base []byte, id int, measuring *atomic.Bool, count *atomic.Int64, h *hist, stop <-chan struct{}) error {
	size, depth := cfg.Size, cfg.Pipeline
	out := make([]byte, 0, size*depth)
	in := make([]byte, size*depth)
	seq := id * 13
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		out = out[:0]
		first := seq
		for k := 0; k < depth; k++ {
			off := (seq + k) % 251
			out = append(out, base[off:off+size]...)
		}
		seq += depth
		t0 := time.Now()
		if _, err := c.Write(out); err != nil {
			return stopped(stop, fmt.Errorf("write: %w", err))
		}
		if _, err := io.ReadFull(c, in); err != nil {
			return stopped(stop, fmt.Errorf("read: %w", err))
		}
		rtt := time.Since(t0)
		for k := 0; k < depth; k++ {
			off := (first + k) % 251
			if !bytes.Equal(in[k*size:(k+1)*size], base[off:off+size]) {
				return fmt.Errorf("message %d of %d bytes: %w", first+k, size, ErrMismatch)
			}
		}
		if measuring.Load() {
			count.Add(int64(depth))
			for k := 0; k < depth; k++ {
				h.record(rtt)
			}
		}
	}
}

// stopped hides the error a connection gets when the load is being torn
// down (its deadline was moved to now on purpose).
func stopped(stop <-chan struct{}, err error) error {
	select {
	case <-stop:
		return nil
	default:
		return err
	}
}
