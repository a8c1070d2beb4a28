package proactorplane

import (
	"fmt"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// Client is the host side of a plane: an sdk.Proactor whose back-end runs
// in a plugin process, for the completion driver to sit on. It is used
// from the loop's goroutine only, except Wake.
//
// How the seam's operations travel:
//   - READ, WRITE, CONNECT, SHUTDOWN, POLL, CANCEL become entries. A
//     write's bytes are copied into the arena (one piece per write, cut to
//     MaxPiece: a write may complete partly); a read completes into a
//     plane buffer, which Complete copies into the buffer of the driver's
//     own group with the same index, and which goes back to the plugin
//     when the driver gives that buffer back (ProvideBuffers).
//   - ACCEPT is a multishot POLL in the plugin and accept4 on the host
//     when it reports readiness: the host keeps owning the connection from
//     its first moment, and no descriptor travels back.
//   - Descriptors are registered lazily, on their first entry (a REGISTER
//     frame with SCM_RIGHTS, then a REGISTER entry); Forget drops one.
//
// When the plugin dies, Abandon fails what was in flight and keeps what
// can be replayed (accepts and polls, which are level-triggered in
// effect); Attach to a new plugin sends it those again.
type Client struct {
	sock   int // control socket, the plugin's; -1 while detached
	plane  *Plane
	bell   int // the plugin's doorbell; -1 while detached
	myBell int // the host's doorbell, kept across plugins (the loop waits on it)
	// wakeMu guards myBell against Close while another goroutine's Wake
	// rings it: a write to a closed descriptor's reused number would reach
	// a stranger.
	wakeMu sync.RWMutex
	arena  Arena

	regs    []uint32 // host descriptor -> registration number, 0 none
	free    []uint32
	nextReg uint32

	ops     map[uint64]*op
	opFree  []*op
	backlog []sdk.Submission // waiting for room in the ring or arena, or for a plugin
	accepts []uint64         // accept operations with connections to take
	synth   []sdk.Completion // results made on the host, delivered first

	group    uint16
	priv     [][]byte // the driver's buffers, by index
	privIdx  map[uintptr]uint16
	provides []uint16 // buffers to give back when the ring has room

	woken bool // syncForget drained the doorbell: the next Complete does not block
	one   [1]sdk.Submission
	pfd   [1]unix.PollFd
	caps  sdk.ProactorCapabilities
}

// op is what the client keeps of an operation until its final result.
type op struct {
	sub      sdk.Submission // FD, Op, Flags, Events: enough to replay
	arenaOff uint32
	arenaSz  int
}

// NewClient makes a client with its own doorbell (an eventfd the host's
// loop waits on), not yet attached to a plugin.
func NewClient(name string) (*Client, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("proactor plane: eventfd: %w", err)
	}
	return &Client{sock: -1, bell: -1, myBell: efd, ops: make(map[uint64]*op), privIdx: make(map[uintptr]uint16),
		caps: sdk.ProactorCapabilities{Name: name, Ops: []string{"nop", "read", "write", "accept", "connect", "shutdown", "poll", "cancel"}}}, nil
}

// Attach hands the client a plugin at the other end of the control socket
// sock (which the client does not own): a new plane, the hello, the
// welcome (waited for up to timeout), then the replay of what Abandon
// kept. It returns the plugin's pid.
func (c *Client) Attach(sock int, timeout time.Duration) (int, error) {
	if c.plane != nil {
		return 0, fmt.Errorf("proactor plane: attach while attached")
	}
	p, memfd, err := Create()
	if err != nil {
		return 0, err
	}
	bell, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(memfd)
		p.Close()
		return 0, fmt.Errorf("proactor plane: eventfd: %w", err)
	}
	fail := func(err error) (int, error) {
		unix.Close(bell)
		p.Close()
		return 0, err
	}
	err = SendFrame(sock, Frame{Kind: FrameHello, A: Size}, memfd, bell, c.myBell)
	unix.Close(memfd)
	if err != nil {
		return fail(err)
	}
	// A signal (the Go runtime's preemption among them) interrupts the
	// poll with EINTR; wait on for what is left of the timeout.
	c.pfd[0] = unix.PollFd{Fd: int32(sock), Events: unix.POLLIN}
	deadline := time.Now().Add(timeout)
	n, err := 0, unix.EINTR
	for err == unix.EINTR {
		n, err = unix.Poll(c.pfd[:], int(max(time.Until(deadline), 0).Milliseconds()))
	}
	if err != nil {
		return fail(fmt.Errorf("proactor plane: waiting for the welcome: %w", err))
	}
	if n == 0 {
		return fail(fmt.Errorf("proactor plane: no welcome within %v", timeout))
	}
	var f Frame
	if _, err := RecvFrame(sock, &f, nil); err != nil {
		return fail(fmt.Errorf("proactor plane: welcome: %w", err))
	}
	if f.Kind != FrameWelcome {
		return fail(fmt.Errorf("%w: answer to the hello is kind %d", ErrProtocol, f.Kind))
	}
	if f.B != 0 {
		return fail(fmt.Errorf("proactor plane: the plugin refused the plane: %w", syscall.Errno(f.B)))
	}
	c.sock, c.plane, c.bell = sock, p, bell
	c.arena.Reset()
	if len(c.priv) > 0 {
		c.provides = c.provides[:0] // the new plugin starts with every buffer
	}
	return int(f.A), nil
}

// Attached reports whether a plugin is attached.
func (c *Client) Attached() bool { return c.plane != nil }

// Plane is the current plane (nil while detached), for a watchdog's
// heartbeat reads under the caller's own lock.
func (c *Client) Plane() *Plane { return c.plane }

// Abandon detaches the dead plugin: every operation in flight in it that
// cannot be replayed completes with -died (a negated errno the caller
// recognises), its arena piece freed; accepts and polls are kept and go to
// the next plugin; every registration is dropped (the next plugin gets
// the descriptors again as they are used).
func (c *Client) Abandon(died syscall.Errno) {
	var replay []sdk.Submission
	for ud, o := range c.ops {
		switch o.sub.Op {
		case sdk.OpAccept, sdk.OpPoll:
			s := o.sub
			s.UserData = ud
			replay = append(replay, s)
		case sdk.OpCancel:
		default:
			c.synth = append(c.synth, sdk.Completion{UserData: ud, Res: -int32(died)})
		}
		c.put(ud, o)
	}
	c.backlog = append(replay, c.backlog...)
	clear(c.regs)
	c.free, c.nextReg = c.free[:0], 0
	c.provides = c.provides[:0]
	if c.plane != nil {
		c.plane.Close()
		c.plane = nil
	}
	if c.bell >= 0 {
		unix.Close(c.bell)
		c.bell = -1
	}
	c.sock = -1
	c.arena.Reset()
}

// FailAll completes everything waiting (the backlog) with -e: for a client
// whose plugin will not come back.
func (c *Client) FailAll(e syscall.Errno) {
	for _, s := range c.backlog {
		if s.Op != sdk.OpCancel {
			c.synth = append(c.synth, sdk.Completion{UserData: s.UserData, Res: -int32(e)})
		}
	}
	clear(c.backlog)
	c.backlog = c.backlog[:0]
}

func (c *Client) put(ud uint64, o *op) {
	if o.arenaSz > 0 && c.plane != nil {
		c.arena.Free(o.arenaOff, o.arenaSz)
	}
	*o = op{}
	delete(c.ops, ud)
	c.opFree = append(c.opFree, o)
}

func (c *Client) newOp(s *sdk.Submission) *op {
	var o *op
	if n := len(c.opFree); n > 0 {
		o = c.opFree[n-1]
		c.opFree = c.opFree[:n-1]
	} else {
		o = new(op)
	}
	o.sub = sdk.Submission{Op: s.Op, Flags: s.Flags, FD: s.FD, Events: s.Events, Group: s.Group, Len: s.Len}
	c.ops[s.UserData] = o
	return o
}

// Submit implements sdk.Proactor. Entries are written now and published by
// the next Complete; what finds no room waits in a backlog.
func (c *Client) Submit(ops []sdk.Submission) error {
	for i := range ops {
		s := &ops[i]
		if s.UserData&UserDataReserved != 0 {
			return fmt.Errorf("proactor plane: user data %#x has reserved bits: %w", s.UserData, unix.EINVAL)
		}
		switch s.Op {
		case sdk.OpRecvFrom, sdk.OpSendTo, sdk.OpSendfile:
			return fmt.Errorf("proactor plane: %d: %w", s.Op, sdk.ErrUnsupported)
		}
		if s.Op == sdk.OpCancel && c.cancelWaiting(s) {
			continue
		}
		if len(c.backlog) > 0 || !c.post(s) {
			c.backlog = append(c.backlog, *s)
		}
	}
	return nil
}

// cancelWaiting cancels an operation still in the backlog (it never
// reached a plugin) by completing it here.
func (c *Client) cancelWaiting(s *sdk.Submission) bool {
	for i := range c.backlog {
		if c.backlog[i].UserData == s.Aux && c.backlog[i].Op != sdk.OpCancel {
			c.backlog = append(c.backlog[:i], c.backlog[i+1:]...)
			c.synth = append(c.synth, sdk.Completion{UserData: s.Aux, Res: -int32(unix.ECANCELED)})
			if s.UserData != 0 {
				c.synth = append(c.synth, sdk.Completion{UserData: s.UserData})
			}
			return true
		}
	}
	return false
}

// room reports whether k entries fit.
func (c *Client) room(k uint32) bool {
	return c.plane.sqLocal-loadU32(c.plane.sqHead) <= SQEntries-k
}

// post writes s's entries, or reports false (nothing written) when there
// is no plugin, no room in the ring or no room in the arena.
func (c *Client) post(s *sdk.Submission) bool {
	if c.plane == nil {
		return false
	}
	e := Entry{UserData: s.UserData}
	need := uint32(1)
	if s.Op != sdk.OpCancel && s.Op != sdk.OpNop {
		if fd := int(s.FD); fd >= len(c.regs) || c.regs[fd] == 0 {
			need = 2
		}
	}
	if !c.room(need) {
		return false
	}
	var o *op
	switch s.Op {
	case sdk.OpNop:
		e.Op = OpNop
	case sdk.OpCancel:
		e.Op, e.Aux = OpCancel, s.Aux
	case sdk.OpRead:
		e.Op, e.Flags, e.Group, e.Len = OpRead, FlagProvided, BufGroup, s.Len
		if s.Flags&sdk.SubMultishot != 0 {
			e.Flags |= FlagMultishot
		}
	case sdk.OpWrite:
		total := 0
		for _, b := range s.Bufs {
			total += len(b)
		}
		off, size, ok := c.arena.Alloc(total)
		if !ok {
			return false
		}
		n := 0
		for _, b := range s.Bufs {
			n += copy(c.plane.Arena[int(off)+n:int(off)+size], b)
			if n == size {
				break
			}
		}
		e.Op, e.ArenaOff, e.ArenaLen = OpWrite, off, uint32(n)
		o = c.newOp(s)
		o.arenaOff, o.arenaSz = off, size
	case sdk.OpConnect:
		if s.Addr == nil || s.Addr.Len < 2 || s.Addr.Len > 128 {
			c.synth = append(c.synth, sdk.Completion{UserData: s.UserData, Res: -int32(unix.EINVAL)})
			return true
		}
		off, size, ok := c.arena.Alloc(int(s.Addr.Len))
		if !ok {
			return false
		}
		copy(c.plane.Arena[off:int(off)+int(s.Addr.Len)], unsafe.Slice((*byte)(unsafe.Pointer(&s.Addr.Raw)), s.Addr.Len))
		e.Op, e.ArenaOff, e.ArenaLen = OpConnect, off, s.Addr.Len
		o = c.newOp(s)
		o.arenaOff, o.arenaSz = off, size
	case sdk.OpShutdown:
		e.Op = OpShutdown
	case sdk.OpPoll, sdk.OpAccept:
		e.Op = OpPoll
		if s.Op == sdk.OpAccept || s.Events&sdk.Read != 0 {
			e.Events |= pollIn
		}
		if s.Events&sdk.Write != 0 {
			e.Events |= pollOut
		}
		if s.Flags&sdk.SubMultishot != 0 {
			e.Flags = FlagMultishot
		}
	default:
		c.synth = append(c.synth, sdk.Completion{UserData: s.UserData, Res: -int32(unix.EOPNOTSUPP)})
		return true
	}
	if need == 2 {
		reg, err := c.register(int(s.FD))
		if err != nil {
			if o != nil {
				c.put(s.UserData, o)
			}
			var en syscall.Errno
			if !asErrno(err, &en) {
				en = unix.EBADF
			}
			if en == unix.EPIPE || en == unix.ECONNRESET {
				// The plugin's end of the control socket is gone: the
				// plugin died, which its supervisor is about to notice.
				en = DiedErrno
			}
			c.synth = append(c.synth, sdk.Completion{UserData: s.UserData, Res: -int32(en)})
			return true
		}
		e.Reg = reg
	} else if s.Op != sdk.OpCancel && s.Op != sdk.OpNop {
		e.Reg = c.regs[s.FD]
	}
	if o == nil && (s.Op != sdk.OpCancel || s.UserData != 0) {
		c.newOp(s)
	}
	e.Put(c.plane.NextEntry())
	return true
}

// register writes fd's REGISTER entry, publishes it (so that the plugin,
// which reads the frame when it meets the entry, drains the control
// socket: a host sending many frames before publishing would block in
// sendmsg on a full socket the plugin does not read), then sends the
// descriptor. The caller made room for the entry.
func (c *Client) register(fd int) (uint32, error) {
	if fd < 0 {
		return 0, unix.EBADF
	}
	var reg uint32
	if n := len(c.free); n > 0 {
		reg = c.free[n-1]
		c.free = c.free[:n-1]
	} else {
		c.nextReg++
		reg = c.nextReg
	}
	for fd >= len(c.regs) {
		c.regs = append(c.regs, 0)
	}
	c.regs[fd] = reg
	(&Entry{Op: OpRegister, Reg: reg}).Put(c.plane.NextEntry())
	if c.plane.PublishEntries() {
		Ring(c.bell)
	}
	if err := SendFrame(c.sock, Frame{Kind: FrameRegister, A: uint64(reg)}, fd); err != nil {
		// The plugin waits for a frame that will not come: it is as good
		// as dead, and its supervisor finds out by its heartbeat.
		return 0, err
	}
	return reg, nil
}

// Forget drops the plugin's copy of fd, after the entries already written
// (cancellations among them): the caller is about to let the kernel close
// fd. Pending accepts of fd are dropped (its number may be reused).
func (c *Client) Forget(fd int) {
	for i := 0; i < len(c.accepts); i++ {
		if o := c.ops[c.accepts[i]]; o == nil || int(o.sub.FD) == fd {
			c.accepts = append(c.accepts[:i], c.accepts[i+1:]...)
			i--
		}
	}
	if fd < 0 || fd >= len(c.regs) || c.regs[fd] == 0 {
		return
	}
	reg := c.regs[fd]
	c.regs[fd] = 0
	if c.plane == nil {
		return
	}
	if len(c.backlog) > 0 || !c.room(1) {
		// The ring is full: FORGET waits its turn behind the backlog as
		// a cancellation of nothing would, keeping the order.
		c.backlog = append(c.backlog, sdk.Submission{Op: sdk.OpNop, Aux: uint64(reg), Flags: forgetMark})
		return
	}
	(&Entry{Op: OpForget, Reg: reg}).Put(c.plane.NextEntry())
	c.free = append(c.free, reg)
	c.syncForget()
}

// syncForget publishes what is written and waits (up to ackWait) until
// the plugin has handled it, so that the plugin's copy of a descriptor is
// gone when the caller closes its own: a peer then sees the socket close
// at once, and a unix socket's name is free to bind again. A wake-up that
// arrives meanwhile is kept for the next Complete.
func (c *Client) syncForget() {
	if c.plane.PublishEntries() {
		Ring(c.bell)
	}
	tail := c.plane.Published()
	if c.plane.WantAck(tail) {
		return
	}
	deadline := time.Now().Add(ackWait)
	for !c.plane.Acked(tail) {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		if c.sleep(left) == nil {
			c.woken = true
		}
	}
}

// forgetMark marks a FORGET waiting in the backlog (an OpNop with Aux the
// registration number).
const forgetMark = 1 << 31

// flush retries the backlog in order.
func (c *Client) flush() {
	i := 0
	for ; i < len(c.backlog); i++ {
		s := &c.backlog[i]
		if s.Op == sdk.OpNop && s.Flags == forgetMark {
			if !c.room(1) {
				break
			}
			(&Entry{Op: OpForget, Reg: uint32(s.Aux)}).Put(c.plane.NextEntry())
			c.free = append(c.free, uint32(s.Aux))
			continue
		}
		if !c.post(s) {
			break
		}
	}
	if i > 0 {
		n := copy(c.backlog, c.backlog[i:])
		clear(c.backlog[n:])
		c.backlog = c.backlog[:n]
	}
}

// Complete implements sdk.Proactor: results made on the host first, then
// the plane's results, then connections to accept; it waits on the host's
// doorbell only when there is nothing at all.
//
// A poll that must not block (timeout 0) and that published entries waits
// until the plugin has handled them (up to ackWait): in process, one
// io_uring_enter submits and reaps what completes at once (a descriptor
// already readable), and the loop's contract (Stop before RunForever runs
// the I/O callbacks of its one poll) relies on it.
func (c *Client) Complete(done []sdk.Completion, timeout time.Duration) (int, error) {
	published := false
	if c.plane != nil {
		c.giveBack()
		if len(c.backlog) > 0 {
			c.flush()
		}
		if c.plane.Unpublished() {
			published = true
			if c.plane.PublishEntries() {
				if err := Ring(c.bell); err != nil {
					return 0, err
				}
			}
		}
	}
	if len(done) == 0 {
		return 0, nil
	}
	if timeout == 0 && published && c.plane != nil {
		// Before gathering: results of earlier entries may be there
		// already, and returning those alone would split what one
		// io_uring_enter reports together in process.
		c.awaitAck()
	}
	n, err := c.gather(done)
	if n > 0 || err != nil {
		return n, err
	}
	if c.woken {
		c.woken, timeout = false, 0
	}
	if timeout == 0 {
		return 0, nil
	}
	c.sleep(timeout)
	return c.gather(done)
}

// awaitAck waits (up to ackWait) until the plugin has handled every entry
// published.
func (c *Client) awaitAck() {
	tail := c.plane.Published()
	if c.plane.WantAck(tail) {
		return
	}
	deadline := time.Now().Add(ackWait)
	for !c.plane.Acked(tail) {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		c.sleep(left)
	}
}

// ackWait bounds the wait of a non-blocking poll for the plugin to handle
// what it published.
const ackWait = 5 * time.Millisecond

// gather fills done from what is there, without waiting.
func (c *Client) gather(done []sdk.Completion) (int, error) {
	n := c.fill(done)
	k, err := c.reap(done[n:])
	n += k
	if err == nil && len(c.accepts) > 0 && n < len(done) {
		n += c.fill(done[n:])
	}
	return n, err
}

// sleep waits on the host's doorbell up to timeout (negative: no limit),
// announcing it to the plugin, unless results are there already.
func (c *Client) sleep(timeout time.Duration) error {
	if c.plane != nil && !c.plane.HostSleep() {
		c.plane.HostAwake()
		return nil
	}
	ms := -1
	if timeout > 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	c.pfd[0] = unix.PollFd{Fd: int32(c.myBell), Events: unix.POLLIN}
	r, err := unix.Poll(c.pfd[:], ms)
	if c.plane != nil {
		c.plane.HostAwake()
	}
	if err != nil && err != unix.EINTR {
		return fmt.Errorf("proactor plane: poll doorbell: %w", err)
	}
	if r > 0 {
		Drain(c.myBell)
	}
	return nil
}

// fill delivers host-made results and accepted connections.
func (c *Client) fill(done []sdk.Completion) int {
	n := copy(done, c.synth)
	if n > 0 {
		k := copy(c.synth, c.synth[n:])
		clear(c.synth[k:])
		c.synth = c.synth[:k]
	}
	for len(c.accepts) > 0 && n < len(done) {
		ud := c.accepts[0]
		o := c.ops[ud]
		if o == nil {
			c.accepts = c.accepts[1:]
			continue
		}
		nfd, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(o.sub.FD), 0, 0, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		switch e {
		case 0:
			done[n] = sdk.Completion{UserData: ud, Res: int32(nfd), More: true}
			n++
			continue
		case unix.EINTR, unix.ECONNABORTED:
			continue
		case unix.EAGAIN:
		default:
			done[n] = sdk.Completion{UserData: ud, Res: -int32(e), More: true}
			n++
		}
		c.accepts = c.accepts[:copy(c.accepts, c.accepts[1:])]
	}
	return n
}

// reap takes the plane's results.
func (c *Client) reap(done []sdk.Completion) (int, error) {
	if c.plane == nil {
		return 0, nil
	}
	ready := c.plane.ResultsReady()
	n, i := 0, uint32(0)
	var r Result
	for ; i < ready && n < len(done); i++ {
		if err := ParseResult(c.plane.PeekResult(i), &r); err != nil {
			c.plane.ConsumeResults(i)
			return n, fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		o := c.ops[r.UserData]
		if o == nil {
			continue // a cancellation nobody asked to hear about
		}
		more := r.Flags&ResMore != 0
		if o.sub.Op == sdk.OpAccept {
			if r.Res > 0 && !c.accepting(r.UserData) {
				c.accepts = append(c.accepts, r.UserData)
			}
			if more {
				continue
			}
			if r.Res >= 0 {
				r.Res = -int32(unix.EAGAIN) // the poll ended on its own: the driver arms it again
			}
		}
		out := &done[n]
		*out = sdk.Completion{UserData: r.UserData, Res: r.Res, More: more}
		if r.Flags&ResBuffer != 0 {
			if int(r.Buffer) >= len(c.priv) || r.Res < 0 {
				c.plane.ConsumeResults(i + 1)
				return n, fmt.Errorf("%w: a result names buffer %d", ErrProtocol, r.Buffer)
			}
			copy(c.priv[r.Buffer], c.plane.Bufs[r.Buffer][:r.Res])
			out.HasBuffer, out.Group, out.Buffer = true, c.group, r.Buffer
		}
		if !more {
			c.put(r.UserData, o)
		}
		n++
	}
	c.plane.ConsumeResults(i)
	return n, nil
}

func (c *Client) accepting(ud uint64) bool {
	for _, a := range c.accepts {
		if a == ud {
			return true
		}
	}
	return false
}

// giveBack writes the PROVIDE entries of the buffers the driver handed
// back since the last Complete.
func (c *Client) giveBack() {
	k := 0
	for ; k < len(c.provides) && c.room(1); k++ {
		(&Entry{Op: OpProvide, Group: BufGroup, Aux: uint64(c.provides[k])}).Put(c.plane.NextEntry())
	}
	c.provides = c.provides[:copy(c.provides, c.provides[k:])]
}

// Wake implements sdk.Proactor: the host's own doorbell.
func (c *Client) Wake() error {
	c.wakeMu.RLock()
	defer c.wakeMu.RUnlock()
	if c.myBell < 0 {
		return fmt.Errorf("proactor plane wake: %w", sdk.ErrSelectorClosed)
	}
	return Ring(c.myBell)
}

// ProvideBuffers implements sdk.Proactor. The first call names the
// driver's buffers (BufCount of at most BufSize bytes); reads complete
// into the plane buffer of the same index and are copied there. A later
// call gives buffers back, and their plane twins go back to the plugin.
func (c *Client) ProvideBuffers(group uint16, bufs [][]byte) error {
	if c.priv == nil {
		if len(bufs) != BufCount {
			return fmt.Errorf("proactor plane: %d buffers provided, the plane has %d: %w", len(bufs), BufCount, unix.EINVAL)
		}
		for i, b := range bufs {
			if len(b) < BufSize {
				return fmt.Errorf("proactor plane: buffer %d holds %d bytes, the plane's %d: %w", i, len(b), BufSize, unix.EINVAL)
			}
			c.privIdx[uintptr(unsafe.Pointer(&b[0]))] = uint16(i)
		}
		c.priv, c.group = bufs, group
		return nil
	}
	if group != c.group {
		return fmt.Errorf("proactor plane: buffer group %d, have %d: %w", group, c.group, unix.EINVAL)
	}
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		i, ok := c.privIdx[uintptr(unsafe.Pointer(&b[0]))]
		if !ok {
			return fmt.Errorf("proactor plane: buffer %p is not one of group %d: %w", &b[0], group, unix.EINVAL)
		}
		if c.plane != nil {
			c.provides = append(c.provides, i)
		}
	}
	return nil
}

// Capabilities implements sdk.Proactor.
func (c *Client) Capabilities() sdk.ProactorCapabilities { return c.caps }

// Close implements sdk.Proactor: it releases the plane and the doorbells;
// the plugin's process is its supervisor's to stop.
func (c *Client) Close() error {
	c.Abandon(unix.ECANCELED)
	c.wakeMu.Lock()
	defer c.wakeMu.Unlock()
	if c.myBell >= 0 {
		unix.Close(c.myBell)
		c.myBell = -1
	}
	return nil
}

var _ sdk.Proactor = (*Client)(nil)
