package echobench

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// loadGo is the Go engine: net.Conn and a goroutine per connection, each
// blocking in Write then io.ReadFull. The runtime's netpoller multiplexes
// them over its own epoll and as many threads as GOMAXPROCS allows.
//
// With cfg.PinClient set, every thread of this process runs on that CPU
// for the load (the goroutines may run on any of them).
func loadGo(ctx context.Context, cfg LoadConfig, window func(open bool)) (LoadResult, error) {
	if cfg.PinClient {
		restore, err := pinSelf(cfg.ClientCPU)
		if err != nil {
			return LoadResult{}, fmt.Errorf("load: %w", err)
		}
		defer restore()
	}
	base := newPattern(cfg.Size)
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
		if cfg.TLS != nil {
			if c, err = handshake(ctx, c, cfg.TLS); err != nil {
				return LoadResult{}, fmt.Errorf("load: connection %d of %d to %s: %w", i+1, cfg.Conns, cfg.Addr, err)
			}
		}
		conns = append(conns, c)
	}

	var measuring atomic.Bool
	var count atomic.Int64
	stop := make(chan struct{})
	failed := make(chan error, 1) // the first error of any connection
	hists := make([]*hist, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		hists[i] = new(hist)
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			errs[i] = goClient(c, cfg, base, i, &measuring, &count, hists[i], stop)
			if errs[i] != nil {
				select {
				case failed <- fmt.Errorf("load: connection %d: %w", i, errs[i]):
				default:
				}
			}
		}(i, c)
	}

	// abort stops every connection at once and returns err; the errors
	// the connections get from it are the teardown's own.
	abort := func(err error) (LoadResult, error) {
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
		return abort(ctx.Err())
	case err := <-failed:
		return abort(err)
	}
	window(true)
	start := time.Now()
	measuring.Store(true)
	select {
	case <-time.After(cfg.Duration):
	case <-ctx.Done():
		return abort(ctx.Err())
	case err := <-failed:
		return abort(err)
	}
	measuring.Store(false)
	elapsed := time.Since(start)
	window(false)
	n := count.Load()
	// Each connection finishes the batch it has in flight, within the
	// grace period: one that cannot has lost bytes, which is an error.
	close(stop)
	for _, c := range conns {
		c.SetDeadline(time.Now().Add(drainGrace))
	}
	wg.Wait()
	for i, err := range errs {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return LoadResult{}, fmt.Errorf("load: connection %d: a batch not echoed whole %v after the window: %w", i, drainGrace, ErrIncomplete)
		}
		if err != nil {
			return LoadResult{}, fmt.Errorf("load: connection %d: %w", i, err)
		}
	}
	var all hist
	for _, h := range hists {
		all.merge(h)
	}
	return LoadResult{Requests: n, Window: elapsed, P50: all.quantile(0.50), P99: all.quantile(0.99)}, nil
}

func goClient(c net.Conn, cfg LoadConfig, base pattern, id int, measuring *atomic.Bool, count *atomic.Int64, h *hist, stop <-chan struct{}) error {
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
		first := seq
		out = base.fillBatch(out, first, depth, size)
		seq += depth
		t0 := time.Now()
		if _, err := c.Write(out); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if _, err := io.ReadFull(c, in); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		rtt := time.Since(t0)
		if !bytes.Equal(in, out) {
			return mismatch(in, out, 0, first, size)
		}
		if measuring.Load() {
			count.Add(int64(depth))
			for k := 0; k < depth; k++ {
				h.record(rtt)
			}
		}
	}
}

// handshake wraps c in a TLS client and completes the handshake, so the
// measured window holds no handshake; on failure c is closed.
func handshake(ctx context.Context, c net.Conn, cfg *tls.Config) (net.Conn, error) {
	tc := tls.Client(c, cfg)
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}
