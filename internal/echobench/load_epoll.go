package echobench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// loadEpoll is the epoll engine: the load generator a C programmer would
// write, so that what it measures does not depend on Go's runtime. One
// goroutine locked to its OS thread (pinned to cfg.ClientCPU when asked)
// owns every socket and one level-triggered epoll instance. Each readiness
// event gets one read(2) or one write(2); a batch of Pipeline messages is
// written as one write (the rest, if the socket buffer is full, when it
// reports writable) and the next batch starts once every byte of this one
// has come back and matched. When the window closes, each connection
// completes the batch it has in flight, or the load fails with
// ErrIncomplete after drainGrace.
func loadEpoll(ctx context.Context, cfg LoadConfig, window func(open bool)) (LoadResult, error) {
	type outcome struct {
		res LoadResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		runtime.LockOSThread()
		if !cfg.PinClient {
			res, err := runEpollLoad(ctx, cfg, window)
			runtime.UnlockOSThread()
			done <- outcome{res, err}
			return
		}
		// The thread goes back to the runtime's pool with its mask
		// restored, before the result is handed over. It must not exit
		// instead (by staying locked): a server started with Pdeathsig
		// from this thread earlier would be killed with it.
		var old unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err != nil {
			runtime.UnlockOSThread()
			done <- outcome{err: fmt.Errorf("load: %w", err)}
			return
		}
		var res LoadResult
		err := pinThread(0, cfg.ClientCPU)
		if err == nil {
			res, err = runEpollLoad(ctx, cfg, window)
		}
		if rerr := unix.SchedSetaffinity(0, &old); rerr != nil {
			// Stay locked: no other goroutine may run on a pinned
			// thread, and the runtime parks this one with us.
			done <- outcome{err: errors.Join(err, fmt.Errorf("load: restore the thread's CPUs: %w", rerr))}
			select {}
		}
		runtime.UnlockOSThread()
		done <- outcome{res, err}
	}()
	o := <-done
	return o.res, o.err
}

// epollConn is one connection of the epoll engine and its batch in flight.
type epollConn struct {
	fd      int
	id      int32  // its index in epollLoad.conns, the epoll event's data
	out     []byte // the batch, as sent
	in      []byte // what came back of it
	wr, rd  int    // bytes of the batch written, read
	first   int    // sequence number of the batch's first message
	t0      time.Time
	writing bool // EPOLLOUT is registered: a write is waiting for room
}

// epollLoad is the engine's state on its thread.
type epollLoad struct {
	cfg       LoadConfig
	ep        int
	base      pattern
	conns     []epollConn
	measuring bool
	draining  bool // the window has closed: finish the batches in flight
	inFlight  int  // batches started and not yet echoed whole
	requests  int64
	counts    ClientCounts
	hist      hist
}

// maxWaitSlice bounds one epoll_wait, so a cancelled context is noticed
// within it even when the server has gone silent.
const maxWaitSlice = 100 * time.Millisecond

func runEpollLoad(ctx context.Context, cfg LoadConfig, window func(open bool)) (LoadResult, error) {
	ta, err := net.ResolveTCPAddr("tcp", cfg.Addr)
	if err != nil {
		return LoadResult{}, fmt.Errorf("load: %w", err)
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return LoadResult{}, fmt.Errorf("load: epoll_create1: %w", err)
	}
	l := &epollLoad{cfg: cfg, ep: ep, base: newPattern(cfg.Size), conns: make([]epollConn, 0, cfg.Conns)}
	defer l.close()
	batch := cfg.Size * cfg.Pipeline
	for i := 0; i < cfg.Conns; i++ {
		fd, err := dialRaw(ta, 5*time.Second)
		if err != nil {
			return LoadResult{}, fmt.Errorf("load: connection %d of %d to %s: %w", i+1, cfg.Conns, cfg.Addr, err)
		}
		l.conns = append(l.conns, epollConn{fd: fd, id: int32(i), out: make([]byte, 0, batch), in: make([]byte, batch)})
		c := &l.conns[i]
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}); err != nil {
			return LoadResult{}, fmt.Errorf("load: epoll_ctl: %w", err)
		}
		if err := l.startBatch(c, i*13); err != nil {
			return LoadResult{}, fmt.Errorf("load: connection %d: %w", i, err)
		}
	}

	// Three phases, each ending at boundary: the warm-up, the window, and
	// the drain, in which no new batch starts and the load ends as soon as
	// every batch in flight has come back.
	events := make([]unix.EpollEvent, max(cfg.Conns, 1))
	boundary := time.Now().Add(cfg.Warmup)
	var start time.Time
	var res LoadResult
	for {
		now := time.Now()
		switch {
		case l.draining && l.inFlight == 0:
			return res, nil
		case now.Before(boundary):
		case l.draining:
			return LoadResult{}, fmt.Errorf("load: %d batches not echoed whole %v after the window: %w", l.inFlight, drainGrace, ErrIncomplete)
		case l.measuring:
			res = LoadResult{Requests: l.requests, Window: now.Sub(start),
				P50: l.hist.quantile(0.50), P99: l.hist.quantile(0.99), Client: l.counts}
			l.measuring = false
			window(false)
			l.draining = true
			boundary = time.Now().Add(drainGrace)
			continue
		default:
			window(true)
			start = time.Now()
			boundary = start.Add(cfg.Duration)
			l.measuring = true
		}
		select {
		case <-ctx.Done():
			return LoadResult{}, ctx.Err()
		default:
		}
		wait := min(time.Until(boundary), maxWaitSlice)
		ms := int((wait + time.Millisecond - 1) / time.Millisecond) // round up: never spin on 0
		n, err := unix.EpollWait(ep, events, max(ms, 0))
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return LoadResult{}, fmt.Errorf("load: epoll_wait: %w", err)
		}
		if l.measuring {
			l.counts.Waits++
			l.counts.Events += int64(n)
		}
		for _, ev := range events[:n] {
			c := &l.conns[ev.Fd]
			if ev.Events&unix.EPOLLOUT != 0 {
				if err := l.flush(c); err != nil {
					return LoadResult{}, fmt.Errorf("load: connection %d: %w", c.id, err)
				}
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
				if err := l.read(c); err != nil {
					return LoadResult{}, fmt.Errorf("load: connection %d: %w", c.id, err)
				}
			}
		}
	}
}

// startBatch fills the connection's next batch and writes what the socket
// takes at once.
func (l *epollLoad) startBatch(c *epollConn, first int) error {
	c.first = first
	c.out = l.base.fillBatch(c.out, first, l.cfg.Pipeline, l.cfg.Size)
	c.wr, c.rd = 0, 0
	c.t0 = time.Now()
	l.inFlight++
	return l.flush(c)
}

// flush writes what is left of the batch: one write(2), and EPOLLOUT
// registered while some of it does not fit, unregistered once it all has.
func (l *epollLoad) flush(c *epollConn) error {
	if c.wr < len(c.out) {
		w, err := unix.Write(c.fd, c.out[c.wr:])
		if l.measuring {
			l.counts.Writes++
		}
		switch {
		case errors.Is(err, unix.EAGAIN):
		case err != nil:
			return fmt.Errorf("write: %w", err)
		default:
			c.wr += w
		}
	}
	want := c.wr < len(c.out)
	if want != c.writing {
		ev := uint32(unix.EPOLLIN)
		if want {
			ev |= unix.EPOLLOUT
		}
		if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: ev, Fd: c.id}); err != nil {
			return fmt.Errorf("epoll_ctl: %w", err)
		}
		c.writing = want
	}
	return nil
}

// read takes one read(2) of what the server echoed, checks each byte
// against what was sent at that offset, and when the batch is complete
// counts it and starts the next.
func (l *epollLoad) read(c *epollConn) error {
	n, err := unix.Read(c.fd, c.in[c.rd:len(c.out)])
	if l.measuring {
		l.counts.Reads++
	}
	switch {
	case errors.Is(err, unix.EAGAIN):
		return nil
	case err != nil:
		return fmt.Errorf("read: %w", err)
	case n == 0:
		return fmt.Errorf("read: the server closed the connection after %d of %d bytes of a batch", c.rd, len(c.out))
	}
	if c.rd+n > c.wr {
		return fmt.Errorf("%d bytes echoed, only %d sent: %w", c.rd+n, c.wr, ErrMismatch)
	}
	if err := mismatch(c.in[c.rd:c.rd+n], c.out[c.rd:c.rd+n], c.rd, c.first, l.cfg.Size); err != nil {
		return err
	}
	c.rd += n
	if c.rd < len(c.out) {
		return nil
	}
	l.inFlight--
	if l.measuring {
		rtt := time.Since(c.t0)
		l.requests += int64(l.cfg.Pipeline)
		for k := 0; k < l.cfg.Pipeline; k++ {
			l.hist.record(rtt)
		}
	}
	if l.draining {
		return nil
	}
	return l.startBatch(c, c.first+l.cfg.Pipeline)
}

func (l *epollLoad) close() {
	for _, c := range l.conns {
		unix.Close(c.fd)
	}
	unix.Close(l.ep)
}

// dialRaw opens a non-blocking TCP connection with TCP_NODELAY, waiting
// at most timeout for the handshake.
func dialRaw(ta *net.TCPAddr, timeout time.Duration) (int, error) {
	family, sa := sockaddrOf(ta)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	err = unix.Connect(fd, sa)
	if errors.Is(err, unix.EINPROGRESS) {
		err = awaitConnect(fd, timeout)
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TCP_NODELAY: %w", err)
	}
	return fd, nil
}

func awaitConnect(fd int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return unix.ETIMEDOUT
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, int(left/time.Millisecond)+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n > 0 {
			break
		}
	}
	soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if soErr != 0 {
		return unix.Errno(soErr)
	}
	return nil
}
