package echobench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// Engine names a load generator. The two are kept side by side because
// they load a server differently and the difference is itself a finding
// (bench/README.md, "Why the two clients disagree").
type Engine string

const (
	// EngineEpoll is a foreign client as a C load generator would be: one
	// locked OS thread, raw non-blocking sockets, one level-triggered
	// epoll. It is the default: what it measures is what a client that
	// is not a Go program sees.
	EngineEpoll Engine = "epoll"
	// EngineGo is Go's net package with a goroutine per connection, the
	// client bench echo had first.
	EngineGo Engine = "go"
)

// ParseEngine accepts the names of the engines.
func ParseEngine(s string) (Engine, error) {
	switch e := Engine(s); e {
	case EngineEpoll, EngineGo:
		return e, nil
	}
	return "", fmt.Errorf("unknown client engine %q (known: %s, %s)", s, EngineEpoll, EngineGo)
}

// LoadConfig is one load: which client, how many connections, how big a
// message, how many messages in flight per connection, and for how long.
type LoadConfig struct {
	Addr     string
	Engine   Engine // EngineEpoll when empty
	Conns    int
	Size     int
	Pipeline int
	Warmup   time.Duration
	Duration time.Duration
	// PinClient pins the client to ClientCPU: the epoll engine's one
	// thread, or every thread of this process while the Go engine runs.
	// Unset, the client runs where the scheduler puts it.
	PinClient bool
	ClientCPU int
	// TLS, when set, speaks TLS to the server with this client
	// configuration; only the Go engine can (the epoll engine is raw
	// system calls, with no TLS library under it).
	TLS *tls.Config
}

// LoadResult is what one load measured in its window.
type LoadResult struct {
	Requests int64
	Window   time.Duration
	P50, P99 time.Duration
	// Client counts what the epoll engine did in the window; zero for the
	// Go engine, whose system calls the runtime makes out of sight.
	Client ClientCounts
}

// ClientCounts are the epoll engine's own system calls in the window:
// they say how much each wakeup of the client carried, which decides how
// the server's work is batched.
type ClientCounts struct {
	Waits, Events, Reads, Writes int64
}

// ErrMismatch: the server echoed bytes that differ from what was sent.
var ErrMismatch = errors.New("echoed bytes differ from the request")

// ErrIncomplete: a batch was not echoed whole within the grace period after
// the window closed: the server lost bytes, or stalled.
var ErrIncomplete = errors.New("the server did not echo every byte it was sent")

// drainGrace is how long, once the window has closed, the connections have
// to complete the batches they have in flight.
const drainGrace = 2 * time.Second

// Load connects cfg.Conns clients, runs them through the warm-up, calls
// window(true) as the measured window opens and window(false) as it closes,
// and returns what was measured. Each connection writes Pipeline messages,
// reads them all back and checks every byte, and repeats; the latency of a
// message is the time from writing its batch to reading its last byte. A
// request counts in the window when its batch completes inside it, in both
// engines; after the window each connection completes the batch it has in
// flight (ErrIncomplete if it cannot within drainGrace), so a server that
// loses a byte fails the load.
func Load(ctx context.Context, cfg LoadConfig, window func(open bool)) (LoadResult, error) {
	if cfg.Pipeline < 1 {
		cfg.Pipeline = 1
	}
	if window == nil {
		window = func(bool) {}
	}
	switch cfg.Engine {
	case EngineEpoll, "":
		if cfg.TLS != nil {
			return LoadResult{}, errors.New("load: the epoll client speaks no TLS; use the go client")
		}
		return loadEpoll(ctx, cfg, window)
	case EngineGo:
		return loadGo(ctx, cfg, window)
	}
	return LoadResult{}, fmt.Errorf("load: %w", errors.New("unknown engine "+string(cfg.Engine)))
}

// pattern is the data every message is cut from. A message is a slice of
// it at an offset that changes with every request, so a server that echoes
// stale, shifted or reordered data is caught by a plain comparison.
type pattern []byte

// patternPeriod is the number of distinct message offsets; prime, so it
// shares no factor with sizes or pipeline depths.
const patternPeriod = 251

func newPattern(size int) pattern {
	base := make([]byte, size+patternPeriod)
	for i := range base {
		base[i] = byte(i*7 + i/patternPeriod)
	}
	return base
}

// message returns the bytes of message seq.
func (p pattern) message(seq, size int) []byte {
	off := seq % patternPeriod
	return p[off : off+size]
}

// fillBatch writes messages first … first+depth-1 into out and returns it.
func (p pattern) fillBatch(out []byte, first, depth, size int) []byte {
	out = out[:0]
	for k := 0; k < depth; k++ {
		out = append(out, p.message(first+k, size)...)
	}
	return out
}

// mismatch describes the first byte where got differs from want, both at
// offset from in a batch of size-byte messages starting at message first.
func mismatch(got, want []byte, from, first, size int) error {
	for i := range got {
		if got[i] != want[i] {
			pos := from + i
			return fmt.Errorf("message %d of %d bytes, byte %d: got %#02x, want %#02x: %w",
				first+pos/size, size, pos%size, got[i], want[i], ErrMismatch)
		}
	}
	return nil
}
