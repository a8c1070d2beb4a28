package proactorplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/yield"
	"github.com/loopkernel/loopkernel/sdk"
)

// The plugin side: Serve runs a proactor (the real io_uring back-end) for a
// host over a plane. It is single-threaded: one goroutine reads the
// submission ring, hands each entry to the proactor, and writes what the
// proactor completes into the result ring; it blocks only inside the
// proactor's Complete, which a doorbell (a multishot poll of the plugin's
// eventfd, armed in the same ring) ends.

const (
	// doorbellUD is the user data of the plugin's poll of its doorbell:
	// bit 62, which the host may not use (UserDataReserved).
	doorbellUD = uint64(1) << 62
	// beat is the longest the plugin blocks: it advances the heartbeat at
	// least this often, so that a host's watchdog can tell a plugin that
	// is waiting from one that is stopped or hung.
	beat = 250 * time.Millisecond
	// maxRegs bounds the registration numbers a host may use.
	maxRegs = 1 << 22
	// minPiece is the arena's smallest piece: write and connect scratch
	// is indexed by arena offset in these units.
	minPiece = 1 << minClassShift
)

// ErrProtocol: the host broke the plane's protocol; the plugin stops.
var ErrProtocol = errors.New("proactor plane: protocol violation")

// server is the plugin's state.
type server struct {
	sock      int
	p         *Plane
	pr        sdk.Proactor
	bell      int     // the plugin's doorbell (host -> plugin)
	hostBell  int     // the host's doorbell
	regs      []int32 // registration number -> the plugin's descriptor, -1 none
	forgets   []int
	sub       []sdk.Submission
	done      []sdk.Completion
	provide   [1][]byte
	wbufs     [][1][]byte    // WRITE buffers, by arena offset / minPiece
	addrs     []sdk.SockAddr // CONNECT addresses, likewise
	fds       [3]int
	submitted uint64
	// yield passes the loop's goroutine through the Go scheduler now and
	// then: it blocks only inside io_uring_enter, and a goroutine that
	// never parks has its P retaken by sysmon at every system call
	// (internal/yield says what that costs).
	yield yield.Ticker
}

// Serve runs pr for the host at the other end of the control socket sock
// until ctx ends or the host goes away: the hello (the plane's memfd and
// both doorbells), the registration of the plane's read buffers with pr,
// the welcome, then the loop. pr is closed when Serve returns; the
// descriptors the host registered are closed too. It returns nil when ctx
// ended, an error wrapping ErrProtocol when the host broke the protocol.
// The end of ctx wakes the loop (pr's Wake), so that a plugin asked to
// shut down goes at once rather than at its next heartbeat.
func Serve(ctx context.Context, sock int, pr sdk.Proactor) (err error) {
	s := &server{sock: sock, pr: pr, bell: -1, hostBell: -1}
	defer s.close()
	if err := s.hello(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = pr.Wake() })
	defer stop()
	return s.loop(ctx)
}

func (s *server) hello() error {
	var f Frame
	n, err := RecvFrame(s.sock, &f, s.fds[:])
	if err != nil {
		return fmt.Errorf("proactor plugin: hello: %w", err)
	}
	if f.Kind != FrameHello || n != 3 {
		for _, fd := range s.fds[:n] {
			unix.Close(fd)
		}
		return fmt.Errorf("%w: first frame is kind %d, want HELLO", ErrProtocol, f.Kind)
	}
	s.bell, s.hostBell = s.fds[1], s.fds[2]
	p, err := Attach(s.fds[0])
	unix.Close(s.fds[0])
	welcome := Frame{Kind: FrameWelcome, A: uint64(os.Getpid())}
	refuse := func(err error) error {
		var e syscall.Errno
		if !errors.As(err, &e) {
			e = unix.EINVAL
		}
		welcome.B = uint64(e)
		SendFrame(s.sock, welcome)
		return err
	}
	if err != nil {
		return refuse(err)
	}
	s.p = p
	if err := s.pr.ProvideBuffers(BufGroup, p.Bufs); err != nil {
		return refuse(fmt.Errorf("proactor plugin: register the plane's read buffers: %w", err))
	}
	s.wbufs = make([][1][]byte, ArenaSize/minPiece)
	s.addrs = make([]sdk.SockAddr, ArenaSize/minPiece)
	s.done = make([]sdk.Completion, 256)
	s.sub = make([]sdk.Submission, 1)
	if err := s.submit(sdk.Submission{Op: sdk.OpPoll, Flags: sdk.SubMultishot, FD: int32(s.bell), Events: sdk.Read, UserData: doorbellUD}); err != nil {
		return refuse(fmt.Errorf("proactor plugin: poll the doorbell: %w", err))
	}
	return SendFrame(s.sock, welcome)
}

func (s *server) submit(sub sdk.Submission) error {
	s.sub[0] = sub
	err := s.pr.Submit(s.sub)
	s.sub[0] = sdk.Submission{}
	s.submitted++
	return err
}

func (s *server) loop(ctx context.Context) error {
	for ctx.Err() == nil {
		s.p.Beat()
		s.yield.TickClock()
		if k := s.p.EntriesReady(); k > 0 {
			for i := range k {
				if err := s.entry(s.p.PeekEntry(i)); err != nil {
					return err
				}
			}
			s.p.ConsumeEntries(k)
		}
		if len(s.forgets) > 0 {
			// The operations on these descriptors must reach the kernel
			// (and so hold the file) before the plugin lets go of them.
			if _, err := s.pr.Complete(s.done[:0], 0); err != nil {
				return fmt.Errorf("proactor plugin: %w", err)
			}
			for _, fd := range s.forgets {
				unix.Close(fd)
			}
			s.forgets = s.forgets[:0]
		}
		room := min(s.p.ResultRoom(), uint32(len(s.done)))
		timeout := time.Duration(0)
		slept := false
		if room > 0 && s.p.PluginSleep() {
			timeout, slept = beat, true
		}
		n, err := s.pr.Complete(s.done[:room], timeout)
		if slept {
			s.p.PluginAwake()
		}
		if err != nil {
			return fmt.Errorf("proactor plugin: %w", err)
		}
		posted := false
		for _, c := range s.done[:n] {
			if c.UserData == doorbellUD {
				if !c.More && ctx.Err() == nil {
					if err := s.submit(sdk.Submission{Op: sdk.OpPoll, Flags: sdk.SubMultishot, FD: int32(s.bell), Events: sdk.Read, UserData: doorbellUD}); err != nil {
						return fmt.Errorf("proactor plugin: poll the doorbell: %w", err)
					}
				}
				continue
			}
			r := Result{UserData: c.UserData, Res: c.Res}
			if c.More {
				r.Flags |= ResMore
			}
			if c.HasBuffer {
				r.Flags |= ResBuffer
				r.Group, r.Buffer = BufGroup, c.Buffer
			}
			r.Put(s.p.NextResult())
			posted = true
		}
		// Results are published before the ack: a host that waits for
		// the ack then finds every result of the batch (a poll of two
		// readable descriptors reports both), never a part of it.
		ring := posted && s.p.PublishResults()
		if s.p.Ack() && !ring {
			ring = s.p.PublishResults()
		}
		if ring {
			if err := Ring(s.hostBell); err != nil {
				return err
			}
		}
		if room == 0 {
			time.Sleep(50 * time.Microsecond) // the host is behind; it empties the ring without being rung
		}
	}
	return nil
}

// fail posts a result for an entry the plugin refuses (an unknown
// registration, a failed submission) without involving the ring.
func (s *server) fail(ud uint64, err error) {
	if ud == 0 {
		return
	}
	var e syscall.Errno
	if !errors.As(err, &e) {
		e = unix.EINVAL
	}
	for s.p.ResultRoom() == 0 {
		time.Sleep(50 * time.Microsecond)
	}
	r := Result{UserData: ud, Res: -int32(e)}
	r.Put(s.p.NextResult())
	if s.p.PublishResults() {
		Ring(s.hostBell)
	}
}

// fd returns the plugin's descriptor of registration reg, or -1.
func (s *server) fd(reg uint32) int32 {
	if int(reg) < len(s.regs) {
		return s.regs[reg]
	}
	return -1
}

// entry handles one submission.
func (s *server) entry(b []byte) error {
	var e Entry
	if err := ParseEntry(b, &e); err != nil {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	sub := sdk.Submission{UserData: e.UserData}
	switch e.Op {
	case OpRegister:
		return s.register(e.Reg)
	case OpForget:
		fd := s.fd(e.Reg)
		if fd < 0 {
			return fmt.Errorf("%w: FORGET of registration %d, which is not registered", ErrProtocol, e.Reg)
		}
		s.regs[e.Reg] = -1
		s.forgets = append(s.forgets, int(fd))
		return nil
	case OpProvide:
		s.provide[0] = s.p.Bufs[e.Aux]
		err := s.pr.ProvideBuffers(BufGroup, s.provide[:])
		s.provide[0] = nil
		if err != nil {
			return fmt.Errorf("proactor plugin: give buffer %d back: %w", e.Aux, err)
		}
		return nil
	case OpNop:
		sub.Op = sdk.OpNop
	case OpCancel:
		sub.Op, sub.Aux = sdk.OpCancel, e.Aux
	default:
		fd := s.fd(e.Reg)
		if fd < 0 {
			s.fail(e.UserData, unix.EBADF)
			return nil
		}
		sub.FD = fd
		switch e.Op {
		case OpRead:
			sub.Op, sub.Flags, sub.Group, sub.Len = sdk.OpRead, sdk.SubProvidedBuffer, BufGroup, e.Len
			if e.Flags&FlagMultishot != 0 {
				sub.Flags |= sdk.SubMultishot
			}
		case OpWrite:
			if e.ArenaOff%minPiece != 0 {
				return fmt.Errorf("%w: WRITE at arena offset %d, not a piece", ErrProtocol, e.ArenaOff)
			}
			w := &s.wbufs[e.ArenaOff/minPiece]
			w[0] = s.p.Arena[e.ArenaOff : e.ArenaOff+e.ArenaLen]
			sub.Op, sub.Bufs = sdk.OpWrite, w[:]
		case OpConnect:
			if e.ArenaOff%minPiece != 0 {
				return fmt.Errorf("%w: CONNECT at arena offset %d, not a piece", ErrProtocol, e.ArenaOff)
			}
			a := &s.addrs[e.ArenaOff/minPiece]
			*a = sdk.SockAddr{Len: e.ArenaLen}
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&a.Raw)), unsafe.Sizeof(a.Raw)), s.p.Arena[e.ArenaOff:e.ArenaOff+e.ArenaLen])
			sub.Op, sub.Addr = sdk.OpConnect, a
		case OpShutdown:
			sub.Op = sdk.OpShutdown
		case OpPoll:
			sub.Op = sdk.OpPoll
			if e.Events&pollIn != 0 {
				sub.Events |= sdk.Read
			}
			if e.Events&pollOut != 0 {
				sub.Events |= sdk.Write
			}
			if e.Flags&FlagMultishot != 0 {
				sub.Flags = sdk.SubMultishot
			}
		}
	}
	if err := s.submit(sub); err != nil {
		s.fail(e.UserData, err)
	}
	return nil
}

// register takes the descriptor of a REGISTER frame, which the host sent
// before it wrote the entry.
func (s *server) register(reg uint32) error {
	if reg == 0 || reg >= maxRegs {
		return fmt.Errorf("%w: registration number %d", ErrProtocol, reg)
	}
	var f Frame
	var fds [1]int
	if _, err := RecvFrame(s.sock, &f, fds[:]); err != nil {
		return fmt.Errorf("proactor plugin: registration %d: %w", reg, err)
	}
	if f.Kind != FrameRegister || f.A != uint64(reg) {
		unix.Close(fds[0])
		return fmt.Errorf("%w: REGISTER entry %d, frame kind %d for %d", ErrProtocol, reg, f.Kind, f.A)
	}
	for int(reg) >= len(s.regs) {
		s.regs = append(s.regs, -1)
	}
	if old := s.regs[reg]; old >= 0 {
		unix.Close(fds[0])
		return fmt.Errorf("%w: registration %d taken twice", ErrProtocol, reg)
	}
	s.regs[reg] = int32(fds[0])
	return nil
}

func (s *server) close() {
	if s.pr != nil {
		s.pr.Close() // cancels and drains what is in flight before the plane goes
	}
	for _, fd := range s.regs {
		if fd >= 0 {
			unix.Close(int(fd))
		}
	}
	for _, fd := range s.forgets {
		unix.Close(fd)
	}
	for _, fd := range []int{s.bell, s.hostBell} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	if s.p != nil {
		s.p.Close()
	}
}
