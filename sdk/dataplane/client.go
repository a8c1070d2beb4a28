package dataplane

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// Client is the host side of the data plane: an sdk.Selector whose real
// selector runs in a plugin process at the other end of a socket.
//
// Register, Modify and Unregister only touch a local table and a queue; the
// queue is flushed in the request frame of the next Wait, so one loop
// iteration costs one request and one reply however many registrations
// changed. The local table is the source of truth: it answers ErrExists and
// ErrNotRegistered synchronously, drops stale events, and lets Replace
// re-register everything with a fresh plugin.
type Client struct {
	log hclog.Logger

	// loopMu is held by Wait and Replace for their whole run, so that a
	// Close from another goroutine can release a blocked Wait (by shutting
	// the socket down) and then wait for it before closing the descriptor.
	loopMu sync.Mutex
	// connMu guards conn and s.fd against Replace/Close while Wake sends
	// from another goroutine. The loop goroutine owns everything else.
	connMu sync.RWMutex
	conn   *os.File
	s      sock
	closed atomic.Bool
	// wakeSent coalesces wakes: only the Wake that flips it sends a frame;
	// Wait clears it when its reply has arrived.
	wakeSent  atomic.Bool
	wakeFrame [headerLen]byte

	caps  sdk.Capabilities
	regs  map[sdk.Token]reg
	byFD  map[int]sdk.Token
	queue []change
	// queued is the index in queue of the newest change per token, so that
	// Modify and Unregister can fold into a change that has not been sent.
	queued map[sdk.Token]int
	seq    uint32
	// wakeNext makes the next Wait poll: set by Replace, because a wake sent
	// to the dead plugin was lost with it.
	wakeNext bool
	// errPending holds tokens whose Error event did not fit in the events
	// slice of the Wait that learned of it; the next Wait reports them.
	errPending []sdk.Token
	// broken is set when a send failed halfway through a batch; the plugin's
	// table can no longer be trusted, so every Wait fails until Replace.
	broken error

	sendBuf []byte
	sendOOB []byte
	fdBuf   []int
	recvBuf []byte
	recvOOB []byte
	rights  []int

	yield yielder // see yielder (yield.go)
}

type reg struct {
	fd       int
	interest sdk.Events
	// failed: the plugin refused this registration (reported once as an
	// Error event); later Modify/Unregister stay local.
	failed bool
}

type change struct {
	tok      sdk.Token
	op       uint8 // 0: cancelled
	interest sdk.Events
	fd       int
}

var _ sdk.Selector = (*Client)(nil)

// NewClient takes ownership of conn (the host end of Socketpair), performs
// the hello exchange and returns a Client using the plugin's capabilities.
// On failure conn is closed.
func NewClient(conn *os.File, logger hclog.Logger) (*Client, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	c := &Client{
		log:     logger,
		regs:    make(map[sdk.Token]reg),
		byFD:    make(map[int]sdk.Token),
		queued:  make(map[sdk.Token]int),
		sendBuf: make([]byte, maxFrame),
		sendOOB: make([]byte, oobSpace),
		fdBuf:   make([]int, 0, maxFDsPerFrame),
		recvBuf: make([]byte, maxFrame+1),
		recvOOB: make([]byte, oobSpace),
		rights:  make([]int, 0, maxFDsPerFrame),
	}
	putHeader(c.wakeFrame[:], header{typ: tWake})
	if err := c.attach(conn); err != nil {
		return nil, err
	}
	return c, nil
}

// attach makes conn the connection and says hello on it. On failure conn is
// closed and the client is left without a connection.
func (c *Client) attach(conn *os.File) error {
	c.connMu.Lock()
	old := c.conn
	c.conn, c.s.fd = conn, int(conn.Fd())
	c.connMu.Unlock()
	if old != nil {
		old.Close()
	}
	caps, err := c.hello()
	if err != nil {
		c.detach()
		return err
	}
	c.caps = caps
	return nil
}

func (c *Client) detach() {
	c.connMu.Lock()
	conn := c.conn
	c.conn, c.s.fd = nil, -1
	c.connMu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

func (c *Client) hello() (sdk.Capabilities, error) {
	putHeader(c.sendBuf, header{typ: tHello})
	if err := c.s.send(c.sendBuf[:headerLen], nil, 0); err != nil {
		return sdk.Capabilities{}, fmt.Errorf("dataplane: hello: %w", err)
	}
	f, err := c.recvFrame(0)
	if err != nil {
		return sdk.Capabilities{}, fmt.Errorf("dataplane: hello: %w", err)
	}
	switch f.typ {
	case tHelloReply:
	case tError:
		return sdk.Capabilities{}, fmt.Errorf("dataplane: hello: plugin refused: %s: %w", f.msg, unix.Errno(f.errno))
	default:
		return sdk.Capabilities{}, fmt.Errorf("dataplane: hello: %w: reply of type %#02x", ErrProtocol, f.typ)
	}
	return sdk.Capabilities{
		Name:         string(f.name),
		MaxFDs:       int(f.maxFDs),
		RegularFiles: f.capFlags&capRegularFiles != 0,
	}, nil
}

// recvFrame receives and validates one frame from the plugin. Descriptors
// the plugin must never send are closed.
func (c *Client) recvFrame(maxEvents int) (pluginFrame, error) {
	n, oobn, mflags, err := c.s.recv(c.recvBuf, c.recvOOB, 0)
	if err != nil {
		return pluginFrame{}, err
	}
	if oobn > 0 {
		var perr error
		c.rights, perr = parseRights(c.recvOOB[:oobn], c.rights[:0])
		closeAll(c.rights)
		if perr != nil || len(c.rights) > 0 {
			return pluginFrame{}, fmt.Errorf("%w: plugin sent %d descriptors (closed)", ErrProtocol, len(c.rights))
		}
	}
	if n == 0 {
		return pluginFrame{}, fmt.Errorf("dataplane: recvmsg: %w (EOF)", ErrPeerGone)
	}
	if mflags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		return pluginFrame{}, fmt.Errorf("%w: frame truncated (flags %#x)", ErrProtocol, mflags)
	}
	return decodePluginFrame(c.recvBuf[:n], 0, maxEvents)
}

// Capabilities reports what the plugin's selector said in the last hello.
func (c *Client) Capabilities() sdk.Capabilities { return c.caps }

// Register validates the registration against the local table and the
// plugin's capabilities now, and queues it for the next Wait. The
// descriptor crosses to the plugin in that Wait's request (the plugin gets
// its own copy through SCM_RIGHTS; fd stays the caller's).
func (c *Client) Register(fd int, tok sdk.Token, interest sdk.Events) error {
	if c.closed.Load() {
		return fmt.Errorf("dataplane: register %v: %w", tok, sdk.ErrSelectorClosed)
	}
	if tok == reservedToken {
		return fmt.Errorf("dataplane: register %v: token reserved for the data plane: %w", tok, unix.EINVAL)
	}
	if _, ok := c.regs[tok]; ok {
		return fmt.Errorf("dataplane: register %v: token %w", tok, sdk.ErrExists)
	}
	if other, ok := c.byFD[fd]; ok {
		return fmt.Errorf("dataplane: register fd %d as %v: fd %w as %v", fd, tok, sdk.ErrExists, other)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("dataplane: register fd %d: %w", fd, err)
	}
	if !c.caps.RegularFiles && st.Mode&unix.S_IFMT == unix.S_IFREG {
		return fmt.Errorf("dataplane: register fd %d: selector %q cannot watch regular files: %w", fd, c.caps.Name, unix.EPERM)
	}
	if c.caps.MaxFDs > 0 && len(c.regs) >= c.caps.MaxFDs {
		return fmt.Errorf("dataplane: register fd %d: selector %q holds its maximum of %d (its limit, or the plugin's descriptors): %w", fd, c.caps.Name, c.caps.MaxFDs, unix.ENOSPC)
	}
	interest &= interestMask
	c.regs[tok] = reg{fd: fd, interest: interest}
	c.byFD[fd] = tok
	c.queued[tok] = len(c.queue)
	c.queue = append(c.queue, change{tok: tok, op: opRegister, interest: interest, fd: fd})
	return nil
}

// Modify replaces the interest of a registration; it is folded into a
// queued Register or Modify for the same token when one is pending.
func (c *Client) Modify(tok sdk.Token, interest sdk.Events) error {
	if c.closed.Load() {
		return fmt.Errorf("dataplane: modify %v: %w", tok, sdk.ErrSelectorClosed)
	}
	r, ok := c.regs[tok]
	if !ok {
		return fmt.Errorf("dataplane: modify %v: %w", tok, sdk.ErrNotRegistered)
	}
	interest &= interestMask
	r.interest = interest
	c.regs[tok] = r
	if r.failed {
		return nil
	}
	if i, ok := c.queued[tok]; ok && c.queue[i].op != opUnregister {
		c.queue[i].interest = interest
		return nil
	}
	c.queued[tok] = len(c.queue)
	c.queue = append(c.queue, change{tok: tok, op: opModify, interest: interest, fd: -1})
	return nil
}

// Unregister forgets the registration at once (no later Wait reports it)
// and queues the removal. A Register still queued for the token is
// cancelled instead: its descriptor must not be sent, because the caller
// may close it as soon as Unregister returns.
func (c *Client) Unregister(tok sdk.Token) error {
	if c.closed.Load() {
		return fmt.Errorf("dataplane: unregister %v: %w", tok, sdk.ErrSelectorClosed)
	}
	r, ok := c.regs[tok]
	if !ok {
		return fmt.Errorf("dataplane: unregister %v: %w", tok, sdk.ErrNotRegistered)
	}
	delete(c.regs, tok)
	delete(c.byFD, r.fd)
	i, pending := c.queued[tok]
	switch {
	case pending && c.queue[i].op == opRegister:
		c.queue[i].op = 0
		delete(c.queued, tok)
	case pending && c.queue[i].op == opModify:
		c.queue[i].op = opUnregister
		c.queue[i].interest = 0
	case r.failed:
		// The plugin never held it (or dropped it when it failed).
	default:
		c.queued[tok] = len(c.queue)
		c.queue = append(c.queue, change{tok: tok, op: opUnregister, fd: -1})
	}
	return nil
}

// Wake makes the current or next Wait return promptly. Bursts cost one
// frame: only the first Wake after a Wait started sends.
func (c *Client) Wake() error {
	if c.closed.Load() {
		return fmt.Errorf("dataplane: wake: %w", sdk.ErrSelectorClosed)
	}
	if !c.wakeSent.CompareAndSwap(false, true) {
		return nil
	}
	c.connMu.RLock()
	defer c.connMu.RUnlock()
	if c.conn == nil {
		c.wakeSent.Store(false)
		return fmt.Errorf("dataplane: wake: %w (no connection)", ErrPeerGone)
	}
	if err := sendWake(c.s.fd, &c.wakeFrame); err != nil {
		c.wakeSent.Store(false)
		return err
	}
	return nil
}

// Wait flushes the queued changes and the wait itself as one request,
// then decodes the plugin's one reply into events. Error records (the
// plugin refused a registration) become one Error event for the token and a
// logged warning.
func (c *Client) Wait(events []sdk.Event, timeout time.Duration) (int, error) {
	if c.closed.Load() {
		return 0, fmt.Errorf("dataplane: wait: %w", sdk.ErrSelectorClosed)
	}
	c.loopMu.Lock()
	defer c.loopMu.Unlock()
	if c.conn == nil {
		if c.closed.Load() {
			return 0, fmt.Errorf("dataplane: wait: %w", sdk.ErrSelectorClosed)
		}
		return 0, fmt.Errorf("dataplane: wait: %w (no connection)", ErrPeerGone)
	}
	if c.broken != nil {
		return 0, c.broken
	}
	if len(events) > maxReplyRecords {
		events = events[:maxReplyRecords]
	}
	if timeout < 0 {
		timeout = -1
	}
	if c.wakeNext || len(c.errPending) > 0 {
		timeout, c.wakeNext = 0, false
	}
	// The loop goroutine calling Wait blocks only in system calls, like the
	// plugin's (see yielder, yield.go).
	c.yield.tick()
	c.seq++
	if err := c.flush(timeout, len(events)); err != nil {
		return 0, err
	}
	f, err := c.recvFrame(len(events))
	// Re-arm Wake only now that the wait is over: a Wake that found the
	// flag set during this Wait was covered by the frame that set it (which
	// ended this wait or will make the next one poll). Re-arming before the
	// request instead would let a Wake between two Waits find the flag still
	// set by a frame already consumed, and be lost.
	c.wakeSent.Store(false)
	if err != nil {
		if c.closed.Load() {
			return 0, fmt.Errorf("dataplane: wait: %w (closed during wait: %w)", sdk.ErrSelectorClosed, err)
		}
		return 0, fmt.Errorf("dataplane: wait: %w", err)
	}
	if f.typ == tError {
		errno := unix.Errno(f.errno)
		if errno == unix.EPROTO || f.seq != c.seq {
			// The plugin is giving up on this connection.
			return 0, fmt.Errorf("dataplane: wait: %w: plugin says: %s: %w", ErrProtocol, f.msg, errno)
		}
		return 0, fmt.Errorf("dataplane: wait: plugin: %s: %w", f.msg, errno)
	}
	if f.typ != tEvents {
		return 0, fmt.Errorf("dataplane: wait: %w: reply of type %#02x", ErrProtocol, f.typ)
	}
	if f.seq != c.seq {
		return 0, fmt.Errorf("dataplane: wait: %w: reply for request %d, want %d", ErrProtocol, f.seq, c.seq)
	}
	n := 0
	keep := c.errPending[:0]
	for _, tok := range c.errPending {
		if r, ok := c.regs[tok]; !ok || !r.failed {
			continue // unregistered or replaced since
		}
		if n < len(events) {
			events[n] = sdk.Event{Token: tok, Events: sdk.Error}
			n++
		} else {
			keep = append(keep, tok)
		}
	}
	c.errPending = keep
	for i := 0; i < int(f.count); i++ {
		tok := recToken(f.recs, i)
		r, live := c.regs[tok]
		if errno := recErrno(f.recs, i); errno != 0 {
			if !live || r.failed {
				c.log.Debug("dropping error record for a token no longer registered", "token", tok, "error", unix.Errno(errno))
				continue
			}
			c.log.Warn("plugin selector refused a registration; reporting an error event", "token", tok, "fd", r.fd, "error", unix.Errno(errno))
			r.failed = true
			c.regs[tok] = r
			if n < len(events) {
				events[n] = sdk.Event{Token: tok, Events: sdk.Error}
				n++
			} else {
				c.errPending = append(c.errPending, tok)
			}
			continue
		}
		if !live || r.failed {
			continue // stale: unregistered on this side
		}
		ev := recEvents(f.recs, i) & (r.interest | sdk.Error | sdk.Hangup)
		if ev == 0 || n >= len(events) {
			continue
		}
		events[n] = sdk.Event{Token: tok, Events: ev}
		n++
	}
	return n, nil
}

// flush sends the queue and the wait as one or more request frames (more
// than one only when a batch exceeds a frame's records or descriptors).
func (c *Client) flush(timeout time.Duration, maxEvents int) error {
	recs, fds := 0, c.fdBuf[:0]
	start := func() {
		recs, fds = 0, c.fdBuf[:0]
	}
	send := func(last bool) error {
		var flags uint16
		if !last {
			flags = fMore
		}
		putHeader(c.sendBuf, header{typ: tRequest, flags: flags, count: uint32(recs), seq: c.seq})
		le.PutUint64(c.sendBuf[16:], uint64(int64(timeout)))
		le.PutUint32(c.sendBuf[24:], uint32(maxEvents))
		le.PutUint32(c.sendBuf[28:], 0)
		err := c.s.send(c.sendBuf[:headerLen+reqBodyLen+recs*recordLen], putRights(c.sendOOB, fds), 0)
		if err != nil {
			return fmt.Errorf("dataplane: wait: send request: %w", err)
		}
		return nil
	}
	sent := false
	for _, ch := range c.queue {
		if ch.op == 0 {
			continue
		}
		if recs == maxRequestRecords || (ch.op == opRegister && len(fds) == maxFDsPerFrame) {
			if err := send(false); err != nil {
				return c.abandon(err, sent)
			}
			sent = true
			start()
		}
		r := c.sendBuf[headerLen+reqBodyLen+recs*recordLen:][:recordLen]
		le.PutUint64(r[0:], uint64(ch.tok))
		r[8], r[9], r[10], r[11] = ch.op, 0, 0, 0
		le.PutUint32(r[12:], uint32(ch.interest))
		if ch.op == opRegister {
			fds = append(fds, ch.fd)
		}
		recs++
	}
	if err := send(true); err != nil {
		if !sent && errors.Is(err, unix.EBADF) && c.dropClosed() {
			return c.flush(timeout, maxEvents)
		}
		return c.abandon(err, sent)
	}
	c.queue = c.queue[:0]
	clear(c.queued)
	return nil
}

// dropClosed handles sendmsg's EBADF: a queued registration names a
// descriptor the caller closed without unregistering it first. Rather than
// fail every Wait from now on (and every plugin restart after it), those
// registrations are marked failed and reported as Error events, as if the
// plugin had refused them. It reports whether it found any.
func (c *Client) dropClosed() bool {
	found := false
	for i, ch := range c.queue {
		if ch.op != opRegister {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(ch.fd), unix.F_GETFD, 0); err != unix.EBADF {
			continue
		}
		c.log.Warn("registered descriptor was closed before it reached the plugin; reporting an error event", "token", ch.tok, "fd", ch.fd)
		c.queue[i].op = 0
		delete(c.queued, ch.tok)
		r := c.regs[ch.tok]
		r.failed = true
		c.regs[ch.tok] = r
		c.errPending = append(c.errPending, ch.tok)
		found = true
	}
	return found
}

// abandon handles a failed send. Once part of a batch went out the plugin's
// table is out of step with ours, so the client refuses to continue until
// Replace; the plugin is told by shutting the socket down.
func (c *Client) abandon(err error, partial bool) error {
	if partial {
		c.broken = fmt.Errorf("dataplane: batch half sent: %w", err)
		c.connMu.RLock()
		unix.Shutdown(c.s.fd, unix.SHUT_RDWR)
		c.connMu.RUnlock()
	}
	return err
}

// Replace switches to a new plugin connection after the old plugin died: it
// closes the old conn, says hello on conn, and queues every live
// registration so the next Wait re-sends them all (descriptor, token and
// interest). Changes queued for the dead plugin are discarded, since the
// table already reflects them. Registrations the old plugin refused are
// tried again. The next Wait polls, because a wake may have been lost with
// the old plugin. On failure conn is closed and Wait fails with ErrPeerGone
// until another Replace succeeds. Call it from the loop goroutine.
func (c *Client) Replace(conn *os.File) error {
	if c.closed.Load() {
		conn.Close()
		return fmt.Errorf("dataplane: replace: %w", sdk.ErrSelectorClosed)
	}
	c.loopMu.Lock()
	defer c.loopMu.Unlock()
	c.queue = c.queue[:0]
	clear(c.queued)
	c.broken = nil
	if err := c.attach(conn); err != nil {
		return fmt.Errorf("dataplane: replace: %w", err)
	}
	for tok, r := range c.regs {
		r.failed = false
		c.regs[tok] = r
		c.queued[tok] = len(c.queue)
		c.queue = append(c.queue, change{tok: tok, op: opRegister, interest: r.interest, fd: r.fd})
	}
	c.wakeNext = true
	return nil
}

// EachRegistration calls f for every live registration, in no particular
// order: what a supervisor hands to an in-process selector that takes over
// from a plugin it could not keep alive. Registrations the plugin refused
// are included (the new selector may take them). Call it from the loop
// goroutine, like Register.
func (c *Client) EachRegistration(f func(fd int, tok sdk.Token, interest sdk.Events)) {
	for tok, r := range c.regs {
		f(r.fd, tok, r.interest)
	}
}

// Close says goodbye to the plugin and closes the connection. It never
// closes registered descriptors: they are the kernel's. A Wait blocked in
// another goroutine is released with an error.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return fmt.Errorf("dataplane: close: %w", sdk.ErrSelectorClosed)
	}
	c.connMu.RLock()
	if c.conn != nil {
		var bye [headerLen]byte
		putHeader(bye[:], header{typ: tGoodbye})
		// A dead plugin cannot hear goodbye; that is not a Close failure.
		// Shutting down releases a Wait blocked in another goroutine.
		sendWake(c.s.fd, &bye)
		unix.Shutdown(c.s.fd, unix.SHUT_RDWR)
	}
	c.connMu.RUnlock()
	c.loopMu.Lock()
	c.connMu.Lock()
	conn := c.conn
	c.conn, c.s.fd = nil, -1
	c.connMu.Unlock()
	c.loopMu.Unlock()
	if conn != nil {
		if err := conn.Close(); err != nil {
			return fmt.Errorf("dataplane: close: %w", err)
		}
	}
	return nil
}
