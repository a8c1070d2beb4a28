package proactor

import (
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

const (
	// ringEntries is the submission ring's size; completions get four
	// times as many.
	ringEntries = 512
	// arenaSize bounds the scratch (iovecs, message headers, addresses) of
	// the submissions queued between two enters.
	arenaSize = 256 << 10
	// maxIovecs is how many buffers one write hands the kernel.
	maxIovecs = 64
	// closeDrain bounds how long Close waits for cancelled operations to
	// complete before it gives up on reclaiming their memory.
	closeDrain = time.Second
)

// Reserved user data: the top bit is the back-end's own.
const (
	tagMask   = 1 << 63
	wakeTag   = tagMask | 1 // the read of the wake-up eventfd
	silentTag = tagMask | 2 // a cancellation whose result nobody wants
)

// Uring is the io_uring back-end: an sdk.Proactor over one ring. Use it
// from one goroutine (the loop's), except Wake.
//
// Memory the kernel sees: the rings and entries are the ring's own
// mappings; the per-submission scratch (iovecs, msghdr, the connect
// address) lives in an mmap'd arena that is reused once the enter that
// carried those submissions returns (the kernel copies them at submission,
// IORING_FEAT_SUBMIT_STABLE); the timeout and the eventfd word live in
// another small mapping. Data buffers from the Go heap (a write's bytes, a
// read's buffer) are pinned with runtime.Pinner from submission until the
// operation's final completion has been reaped, so the garbage collector
// neither frees nor (in any future runtime) moves them while the kernel may
// touch them; provided buffers are the caller's to keep mapped.
type Uring struct {
	r      *ring
	arena  []byte
	used   int
	fixed  *fixedArea
	fixMem []byte
	efd    int

	// wakeMu guards efd against Close while another goroutine's Wake
	// writes to it: a write to a closed descriptor's reused number would
	// reach a stranger.
	wakeMu sync.RWMutex

	recs     map[uint64]*opRec // operations holding pinned memory or needing a retry
	free     []*opRec
	groups   map[uint16]*bufGroup
	inflight int  // submitted entries whose final completion is not reaped
	closing  bool // Close is draining: the wake-up read is not re-armed
	closed   bool
	broken   error
}

// fixedArea is the back-end's permanent kernel-visible state.
type fixedArea struct {
	wakeBuf uint64
	ts      unix.Timespec
	arg     getEventsArg
	reg     bufReg
}

// opRec is what the back-end keeps of an operation until its final
// completion: the submission (to retry a read or write on a descriptor
// that is not a socket as a plain read or write) and its pins.
type opRec struct {
	sub      sdk.Submission
	pin      runtime.Pinner
	fallback bool
}

// bufGroup is one provided-buffer ring.
type bufGroup struct {
	mem   []byte
	ring  []ringBuf
	mask  uint16
	tail  uint16
	bufs  [][]byte
	index map[uintptr]uint16
	pin   runtime.Pinner
}

// New opens an io_uring proactor. Where io_uring is refused the error
// wraps ErrRefused, says why and names the epoll policy.
func New() (*Uring, error) {
	r, err := setupRing(ringEntries)
	if err != nil {
		return nil, err
	}
	u := &Uring{r: r, efd: -1, recs: make(map[uint64]*opRec), groups: make(map[uint16]*bufGroup)}
	fail := func(err error) (*Uring, error) { u.release(); return nil, err }
	if u.arena, err = unix.Mmap(-1, 0, arenaSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS); err != nil {
		return fail(fmt.Errorf("io_uring: mmap arena: %w", err))
	}
	if u.fixMem, err = unix.Mmap(-1, 0, unix.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS); err != nil {
		return fail(fmt.Errorf("io_uring: mmap: %w", err))
	}
	u.fixed = (*fixedArea)(unsafe.Pointer(&u.fixMem[0]))
	if u.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fail(fmt.Errorf("io_uring: eventfd: %w", err))
	}
	if err := u.armWake(); err != nil {
		return fail(err)
	}
	return u, nil
}

// Available reports whether io_uring can be used here, with New's error
// when it cannot.
func Available() error {
	r, err := setupRing(8)
	if err != nil {
		return err
	}
	return r.close()
}

// get returns a submission entry, flushing the queue to the kernel when
// the ring (or the scratch arena, need bytes) is full.
func (u *Uring) get(need int) (*sqe, error) {
	if u.used+need > len(u.arena) {
		if err := u.flush(); err != nil {
			return nil, err
		}
	}
	for range 3 {
		if e := u.r.next(); e != nil {
			u.inflight++
			return e, nil
		}
		if err := u.flush(); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("io_uring: submission ring stays full: %w", unix.EBUSY)
}

// flush submits what is queued without waiting.
func (u *Uring) flush() error {
	if err := u.r.enter(false, nil); err != nil {
		return err
	}
	u.reclaim()
	return nil
}

// reclaim reuses the scratch arena once the kernel consumed every queued
// submission (and so copied what they point at).
func (u *Uring) reclaim() {
	if u.r.pending() == 0 {
		u.used = 0
	}
}

// scratch takes n bytes of the arena, 8-aligned; get(n) made room.
func (u *Uring) scratch(n int) unsafe.Pointer {
	p := unsafe.Pointer(&u.arena[u.used])
	u.used += (n + 7) &^ 7
	return p
}

func (u *Uring) armWake() error {
	e, err := u.get(0)
	if err != nil {
		return err
	}
	e.opcode, e.fd, e.userData = opRead, int32(u.efd), wakeTag
	e.addr, e.len = uint64(uintptr(unsafe.Pointer(&u.fixed.wakeBuf))), 8
	return nil
}

func (u *Uring) rec(s *sdk.Submission) *opRec {
	var r *opRec
	if n := len(u.free); n > 0 {
		r = u.free[n-1]
		u.free = u.free[:n-1]
	} else {
		r = new(opRec)
	}
	r.sub, r.fallback = *s, false
	u.recs[s.UserData] = r
	return r
}

func (u *Uring) drop(ud uint64) {
	r := u.recs[ud]
	if r == nil {
		return
	}
	delete(u.recs, ud)
	r.pin.Unpin()
	r.sub = sdk.Submission{}
	u.free = append(u.free, r)
}

// Submit implements sdk.Proactor. UserData must not have its top bit set
// (the back-end's own); a cancellation whose UserData is 0 reports
// nothing. OpRead and OpWrite are tried as socket operations (recv,
// sendmsg with MSG_NOSIGNAL) and retried as read and writev on a
// descriptor that turns out not to be a socket.
func (u *Uring) Submit(ops []sdk.Submission) error {
	if u.closed {
		return fmt.Errorf("io_uring submit: %w", sdk.ErrSelectorClosed)
	}
	for i := range ops {
		s := &ops[i]
		if s.UserData&tagMask != 0 {
			return fmt.Errorf("io_uring submit: user data %#x has the reserved top bit: %w", s.UserData, unix.EINVAL)
		}
		if err := u.submit(s, false); err != nil {
			return err
		}
	}
	return nil
}

func (u *Uring) submit(s *sdk.Submission, fallback bool) error {
	need := 0
	switch s.Op {
	case sdk.OpWrite:
		need = int(unsafe.Sizeof(msghdr{})) + maxIovecs*int(unsafe.Sizeof(iovec{}))
	case sdk.OpConnect:
		need = int(unsafe.Sizeof(unix.RawSockaddrAny{}))
	}
	e, err := u.get(need)
	if err != nil {
		return err
	}
	e.fd, e.userData = s.FD, s.UserData
	switch s.Op {
	case sdk.OpNop:
		e.opcode = opNop
	case sdk.OpRead:
		e.opcode = opRecv
		if fallback {
			e.opcode = opRead
			e.off = ^uint64(0) // the file position, as read(2)
		}
		r := u.rec(s)
		r.fallback = fallback
		if s.Flags&sdk.SubProvidedBuffer != 0 {
			e.flags |= sqeBufferSelect
			e.bufGroup = s.Group
			if s.Flags&sdk.SubMultishot != 0 {
				if fallback {
					e.opcode = opReadMultishot
				} else {
					e.ioprio |= recvMultishot
				}
			} else {
				e.len = s.Len
			}
		} else if len(s.Buf) > 0 {
			r.pin.Pin(&s.Buf[0])
			e.addr, e.len = uint64(uintptr(unsafe.Pointer(&s.Buf[0]))), uint32(len(s.Buf))
		}
	case sdk.OpWrite:
		r := u.rec(s)
		r.fallback = fallback
		// The arena is written through pointer-free types only: a store
		// of a Go pointer type into it would make the write barrier read
		// the previous batch's value there as a pointer, into memory the
		// collector may have freed since.
		msg := (*msghdr)(u.scratch(int(unsafe.Sizeof(msghdr{}))))
		iov := unsafe.Slice((*iovec)(u.scratch(maxIovecs*int(unsafe.Sizeof(iovec{})))), maxIovecs)
		n := 0
		for _, b := range s.Bufs {
			if n == maxIovecs {
				break
			}
			if len(b) == 0 {
				continue
			}
			r.pin.Pin(&b[0])
			iov[n] = iovec{base: uint64(uintptr(unsafe.Pointer(&b[0]))), len: uint64(len(b))}
			n++
		}
		*msg = msghdr{iov: uint64(uintptr(unsafe.Pointer(&iov[0]))), iovlen: uint64(n)}
		if fallback {
			e.opcode, e.addr, e.len, e.off = opWritev, uint64(uintptr(unsafe.Pointer(&iov[0]))), uint32(n), ^uint64(0)
		} else {
			e.opcode, e.addr, e.opFlags = opSendmsg, uint64(uintptr(unsafe.Pointer(msg))), unix.MSG_NOSIGNAL
		}
	case sdk.OpAccept:
		e.opcode, e.opFlags = opAccept, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC
		if s.Flags&sdk.SubMultishot != 0 {
			e.ioprio |= acceptMultishot
		}
	case sdk.OpConnect:
		if s.Addr == nil || s.Addr.Len == 0 {
			return fmt.Errorf("io_uring connect: no address: %w", unix.EINVAL)
		}
		sa := (*unix.RawSockaddrAny)(u.scratch(int(unsafe.Sizeof(unix.RawSockaddrAny{}))))
		*sa = s.Addr.Raw
		e.opcode, e.addr, e.off = opConnect, uint64(uintptr(unsafe.Pointer(sa))), uint64(s.Addr.Len)
	case sdk.OpShutdown:
		e.opcode, e.len = opShutdown, unix.SHUT_WR
	case sdk.OpPoll:
		var ev uint32
		if s.Events&sdk.Read != 0 {
			ev |= unix.POLLIN
		}
		if s.Events&sdk.Write != 0 {
			ev |= unix.POLLOUT
		}
		e.opcode, e.opFlags = opPollAdd, ev
		if s.Flags&sdk.SubMultishot != 0 {
			e.len = pollAddMulti
		}
	case sdk.OpCancel:
		e.opcode, e.addr, e.fd = opAsyncCancel, s.Aux, -1
		if s.UserData == 0 {
			e.userData = silentTag
		}
	default:
		u.r.sqLocal-- // give the entry back
		u.inflight--
		return fmt.Errorf("io_uring: operation %d: %w", s.Op, sdk.ErrUnsupported)
	}
	return nil
}

// Complete implements sdk.Proactor: one io_uring_enter submits everything
// queued and, when nothing has completed yet and timeout allows, waits.
// Complete with an empty done only submits.
func (u *Uring) Complete(done []sdk.Completion, timeout time.Duration) (int, error) {
	if u.closed {
		return 0, sdk.ErrSelectorClosed
	}
	if u.broken != nil {
		return 0, u.broken
	}
	wait := len(done) > 0 && timeout != 0 && u.r.ready() == 0
	if wait || u.r.pending() > 0 {
		var arg *getEventsArg
		if wait && timeout > 0 {
			u.fixed.ts = unix.NsecToTimespec(int64(timeout))
			u.fixed.arg = getEventsArg{ts: uint64(uintptr(unsafe.Pointer(&u.fixed.ts)))}
			arg = &u.fixed.arg
		}
		if err := u.r.enter(wait, arg); err != nil {
			u.broken = err
			return 0, err
		}
		u.reclaim()
	}
	return u.reap(done)
}

// reap fills done from the completion ring, handling the back-end's own
// completions (wake-ups, silent cancellations, retries) on the way.
func (u *Uring) reap(done []sdk.Completion) (int, error) {
	n := 0
	for n < len(done) && u.r.ready() > 0 {
		c := *u.r.peek()
		u.r.advance(1)
		more := c.flags&cqeFMore != 0
		if !more {
			u.inflight--
		}
		switch c.userData {
		case wakeTag:
			if u.closing {
				continue
			}
			if err := u.armWake(); err != nil {
				return n, err
			}
			continue
		case silentTag:
			continue
		}
		if r := u.recs[c.userData]; r != nil && !more {
			if c.res == -int32(unix.ENOTSOCK) && !r.fallback {
				s := r.sub
				u.drop(c.userData)
				if err := u.submit(&s, true); err != nil {
					return n, err
				}
				continue
			}
		}
		out := &done[n]
		*out = sdk.Completion{UserData: c.userData, Res: c.res, More: more}
		if c.flags&cqeFBuffer != 0 {
			out.HasBuffer, out.Buffer = true, uint16(c.flags>>cqeBufferShift)
			if r := u.recs[c.userData]; r != nil {
				out.Group = r.sub.Group
			}
		}
		if !more {
			u.drop(c.userData)
		}
		n++
	}
	return n, nil
}

// wakeOne is the eventfd increment; write(2) copies it.
var wakeOne uint64 = 1

// Wake implements sdk.Proactor: a write to the eventfd that a read in the
// ring waits on.
func (u *Uring) Wake() error {
	u.wakeMu.RLock()
	defer u.wakeMu.RUnlock()
	if u.efd < 0 {
		return fmt.Errorf("io_uring wake: %w", sdk.ErrSelectorClosed)
	}
	_, _, e := unix.Syscall(unix.SYS_WRITE, uintptr(u.efd), uintptr(unsafe.Pointer(&wakeOne)), 8)
	if e != 0 && e != unix.EAGAIN {
		return fmt.Errorf("io_uring wake: %w", e)
	}
	return nil
}

// ProvideBuffers implements sdk.Proactor. The first call for a group
// registers a provided-buffer ring of its buffers (all of one size; their
// memory must stay valid until Close: mmap'd memory is best, Go memory is
// pinned); a later call hands buffers of the group back, recognised by
// address, once a completion's data has been consumed.
func (u *Uring) ProvideBuffers(group uint16, bufs [][]byte) error {
	g := u.groups[group]
	if g == nil {
		return u.register(group, bufs)
	}
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		bid, ok := g.index[uintptr(unsafe.Pointer(&b[0]))]
		if !ok {
			return fmt.Errorf("io_uring: buffer %p is not one of group %d: %w", &b[0], group, unix.EINVAL)
		}
		g.add(bid)
	}
	g.publish()
	return nil
}

func (u *Uring) register(group uint16, bufs [][]byte) error {
	if len(bufs) == 0 || len(bufs) > 1<<15 {
		return fmt.Errorf("io_uring: provide %d buffers: between 1 and 32768: %w", len(bufs), unix.EINVAL)
	}
	entries := 1 << bits.Len(uint(len(bufs)-1))
	mem, err := unix.Mmap(-1, 0, entries*int(unsafe.Sizeof(ringBuf{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("io_uring: mmap buffer ring: %w", err)
	}
	g := &bufGroup{mem: mem, ring: unsafe.Slice((*ringBuf)(unsafe.Pointer(&mem[0])), entries), mask: uint16(entries - 1),
		bufs: bufs, index: make(map[uintptr]uint16, len(bufs))}
	reg := &u.fixed.reg // read during the call only
	*reg = bufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&mem[0]))), ringEntries: uint32(entries), bgid: group}
	if err := u.r.register(registerPbufRing, unsafe.Pointer(reg), 1); err != nil {
		unix.Munmap(mem)
		return fmt.Errorf("io_uring: register provided-buffer ring %d: %w", group, err)
	}
	for i, b := range bufs {
		g.pin.Pin(&b[0]) // a no-op for mmap'd memory
		g.index[uintptr(unsafe.Pointer(&b[0]))] = uint16(i)
		g.add(uint16(i))
	}
	g.publish()
	u.groups[group] = g
	return nil
}

func (g *bufGroup) add(bid uint16) {
	b := g.bufs[bid]
	// Field by field: resv of entry 0 is the ring's tail, which only
	// publish may store.
	e := &g.ring[g.tail&g.mask]
	e.addr, e.len, e.bid = uint64(uintptr(unsafe.Pointer(&b[0]))), uint32(len(b)), bid
	g.tail++
}

// publish stores the tail, which overlays the first entry's last field.
func (g *bufGroup) publish() {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&g.mem[12])), uint32(g.tail)<<16|uint32(*(*uint16)(unsafe.Pointer(&g.mem[12]))))
}

// Capabilities implements sdk.Proactor.
func (u *Uring) Capabilities() sdk.ProactorCapabilities {
	return sdk.ProactorCapabilities{Name: "uring", Ops: []string{"nop", "read", "write", "accept", "connect", "shutdown", "poll", "cancel"}}
}

// Close implements sdk.Proactor: every operation in flight is cancelled and
// waited for (up to closeDrain) before the memory they use is released; if
// some do not complete, their pins and mappings are leaked rather than
// handed back while the kernel might still use them.
func (u *Uring) Close() error {
	if u.closed {
		return nil
	}
	u.closing = true
	if e, err := u.get(0); err == nil {
		e.opcode, e.fd, e.userData, e.opFlags = opAsyncCancel, -1, silentTag, asyncCancelAny|asyncCancelAll
	}
	deadline := time.Now().Add(closeDrain)
	var sink [64]sdk.Completion
	for u.inflight > 0 && time.Now().Before(deadline) && u.broken == nil {
		u.Complete(sink[:], 10*time.Millisecond)
	}
	u.closed = true
	if u.inflight > 0 {
		u.recs, u.groups = nil, nil // keep the pins: the kernel may still write
		err := u.r.close()
		u.closeWake()
		return err
	}
	return u.release()
}

func (u *Uring) release() error {
	u.closed = true
	var err error
	if u.r != nil {
		err = u.r.close()
	}
	for ud := range u.recs {
		u.drop(ud)
	}
	for _, g := range u.groups {
		g.pin.Unpin()
		unix.Munmap(g.mem)
	}
	u.closeWake()
	if u.arena != nil {
		unix.Munmap(u.arena)
	}
	if u.fixMem != nil {
		unix.Munmap(u.fixMem)
	}
	u.fixed = nil
	return err
}

var _ sdk.Proactor = (*Uring)(nil)

func (u *Uring) closeWake() {
	u.wakeMu.Lock()
	defer u.wakeMu.Unlock()
	if u.efd >= 0 {
		unix.Close(u.efd)
		u.efd = -1
	}
}
