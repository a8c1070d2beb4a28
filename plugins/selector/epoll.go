package selector

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/loopkernel/loopkernel/sdk"
	"golang.org/x/sys/unix"
)

// wakeToken is the epoll data word of the selector's own eventfd. epoll hands
// back only the 64-bit data word, so the eventfd needs a value no
// registration can carry; Register refuses it. It is slot 2^32-1 of
// generation 2^32-1, which a registration table never reaches.
const wakeToken = ^sdk.Token(0)

type epollReg struct {
	fd       int
	interest sdk.Events
}

// epollSelector is the level-triggered epoll(7) selector.
//
// The token travels in the epoll_event data word (Fd and Pad together), so a
// ready event maps to its registration without a lookup by descriptor. Wait
// still checks the token against the registration table, because a descriptor
// closed behind the selector's back while another copy of it stays open keeps
// its epoll registration alive, and the seam promises that an unregistered
// token is never reported.
//
// An empty interest set is not passed to epoll as events=0: epoll always
// reports EPOLLERR and EPOLLHUP, so a hung-up descriptor the owner had paused
// would make every Wait return at once. Such a registration is taken out of
// the epoll set instead and put back when Modify gives it interest again.
type epollSelector struct {
	epfd int
	w    waker
	regs epollTable        // by token and by descriptor (epoll_table.go)
	buf  []unix.EpollEvent // reused by every Wait so that Wait does not allocate
}

// NewEpoll returns a level-triggered selector over Linux epoll. It refuses
// regular files (epoll answers EPERM for them; errors.Is(err, unix.EPERM)
// holds for the returned error).
func NewEpoll() (sdk.Selector, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", os.NewSyscallError("epoll_create1", err))
	}
	s := &epollSelector{
		epfd: epfd,
		buf:  make([]unix.EpollEvent, 64),
	}
	if err := s.w.open(); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setEpollToken(&ev, wakeToken)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, s.w.fd, &ev); err != nil {
		s.w.close()
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll: watch wake eventfd: %w", os.NewSyscallError("epoll_ctl", err))
	}
	return s, nil
}

func setEpollToken(ev *unix.EpollEvent, tok sdk.Token) {
	ev.Fd = int32(uint32(tok))
	ev.Pad = int32(uint32(tok >> 32))
}

func epollToken(ev *unix.EpollEvent) sdk.Token {
	return sdk.Token(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32)
}

func toEpoll(e sdk.Events) uint32 {
	var m uint32
	if e&sdk.Read != 0 {
		m |= unix.EPOLLIN
	}
	if e&sdk.Write != 0 {
		m |= unix.EPOLLOUT
	}
	return m
}

func fromEpoll(m uint32) sdk.Events {
	var e sdk.Events
	if m&unix.EPOLLIN != 0 {
		e |= sdk.Read
	}
	if m&unix.EPOLLOUT != 0 {
		e |= sdk.Write
	}
	if m&unix.EPOLLERR != 0 {
		e |= sdk.Error
	}
	if m&unix.EPOLLHUP != 0 {
		e |= sdk.Hangup
	}
	return e
}

// active reports whether an interest set asks for anything. Error and Hangup
// are only ever reported, so a set holding nothing else is empty.
func active(interest sdk.Events) bool { return interest&(sdk.Read|sdk.Write) != 0 }

func (s *epollSelector) ctl(op, fd int, tok sdk.Token, interest sdk.Events) error {
	ev := unix.EpollEvent{Events: toEpoll(interest)}
	setEpollToken(&ev, tok)
	if err := unix.EpollCtl(s.epfd, op, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

func (s *epollSelector) Register(fd int, tok sdk.Token, interest sdk.Events) error {
	if s.w.isClosed() {
		return fmt.Errorf("epoll: register fd %d as %v: %w", fd, tok, sdk.ErrSelectorClosed)
	}
	if tok == wakeToken {
		return fmt.Errorf("epoll: register fd %d as %v: token reserved for the wake-up: %w", fd, tok, unix.EINVAL)
	}
	if _, ok := s.regs.get(tok); ok {
		return fmt.Errorf("epoll: register fd %d as %v: token %w", fd, tok, sdk.ErrExists)
	}
	if other, ok := s.regs.fdToken(fd); ok {
		return fmt.Errorf("epoll: register fd %d as %v: fd %w as %v", fd, tok, sdk.ErrExists, other)
	}
	if fd < 0 {
		return fmt.Errorf("epoll: register fd %d as %v: %w", fd, tok, unix.EBADF)
	}
	if err := s.ctl(unix.EPOLL_CTL_ADD, fd, tok, interest); err != nil {
		return fmt.Errorf("epoll: register fd %d as %v: %w", fd, tok, err)
	}
	if !active(interest) {
		// The ADD above validated the descriptor (EBADF, EPERM) exactly as a
		// later Modify would; an idle registration stays out of the set.
		if err := s.ctl(unix.EPOLL_CTL_DEL, fd, tok, 0); err != nil {
			return fmt.Errorf("epoll: register fd %d as %v: %w", fd, tok, err)
		}
	}
	s.regs.put(tok, epollReg{fd: fd, interest: interest})
	s.regs.setFD(fd, tok)
	return nil
}

func (s *epollSelector) Modify(tok sdk.Token, interest sdk.Events) error {
	if s.w.isClosed() {
		return fmt.Errorf("epoll: modify %v: %w", tok, sdk.ErrSelectorClosed)
	}
	r, ok := s.regs.get(tok)
	if !ok {
		return fmt.Errorf("epoll: modify %v: %w", tok, sdk.ErrNotRegistered)
	}
	if toEpoll(interest) == toEpoll(r.interest) {
		r.interest = interest
		s.regs.put(tok, r)
		return nil
	}
	var err error
	switch {
	case !active(r.interest):
		err = s.ctl(unix.EPOLL_CTL_ADD, r.fd, tok, interest)
	case !active(interest):
		err = s.ctl(unix.EPOLL_CTL_DEL, r.fd, tok, 0)
	default:
		err = s.ctl(unix.EPOLL_CTL_MOD, r.fd, tok, interest)
	}
	if err != nil {
		return fmt.Errorf("epoll: modify %v (fd %d) to %v: %w", tok, r.fd, interest, err)
	}
	r.interest = interest
	s.regs.put(tok, r)
	return nil
}

// Unregister always forgets the registration, even when epoll_ctl fails, so
// that the token is never reported again. EBADF and ENOENT are not errors
// here: they mean the descriptor was closed first, which already took it out
// of the epoll set.
func (s *epollSelector) Unregister(tok sdk.Token) error {
	if s.w.isClosed() {
		return fmt.Errorf("epoll: unregister %v: %w", tok, sdk.ErrSelectorClosed)
	}
	r, ok := s.regs.get(tok)
	if !ok {
		return fmt.Errorf("epoll: unregister %v: %w", tok, sdk.ErrNotRegistered)
	}
	s.regs.del(tok)
	s.regs.delFD(r.fd)
	if !active(r.interest) {
		return nil
	}
	if err := s.ctl(unix.EPOLL_CTL_DEL, r.fd, tok, 0); err != nil &&
		!errors.Is(err, unix.EBADF) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("epoll: unregister %v (fd %d): %w", tok, r.fd, err)
	}
	return nil
}

func (s *epollSelector) Wait(events []sdk.Event, timeout time.Duration) (int, error) {
	if s.w.isClosed() {
		return 0, fmt.Errorf("epoll: wait: %w", sdk.ErrSelectorClosed)
	}
	// Never ask the kernel for more events than the caller can take: epoll
	// moves every event it returns to the back of its ready list, so an
	// event dropped here would be skipped for a whole rotation, and two
	// layers that each drop one (the data plane's plugin over this selector)
	// can fall into a cycle that starves some registrations for good. The
	// wake-up may take one of the slots; that costs a registration one Wait
	// at most.
	want := max(len(events), 1)
	if len(s.buf) < want {
		s.buf = make([]unix.EpollEvent, want)
	}
	n, err := unix.EpollWait(s.epfd, s.buf[:want], msTimeout(timeout))
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		return 0, fmt.Errorf("epoll: wait: %w", os.NewSyscallError("epoll_wait", err))
	}
	out := 0
	for i := range s.buf[:n] {
		ev := &s.buf[i]
		tok := epollToken(ev)
		if tok == wakeToken {
			s.w.consume()
			continue
		}
		if _, ok := s.regs.get(tok); !ok || out == len(events) {
			continue
		}
		events[out] = sdk.Event{Token: tok, Events: fromEpoll(ev.Events)}
		out++
	}
	return out, nil
}

func (s *epollSelector) Wake() error { return s.w.wake("epoll") }

func (s *epollSelector) Capabilities() sdk.Capabilities {
	return sdk.Capabilities{Name: "epoll", RegularFiles: false}
}

// Close releases the epoll and wake descriptors; the registered descriptors
// stay open, they belong to the caller.
func (s *epollSelector) Close() error {
	first, err := s.w.close()
	if !first {
		return fmt.Errorf("epoll: close: %w", sdk.ErrSelectorClosed)
	}
	s.regs = epollTable{}
	if cerr := unix.Close(s.epfd); cerr != nil && err == nil {
		err = os.NewSyscallError("close", cerr)
	}
	if err != nil {
		return fmt.Errorf("epoll: close: %w", err)
	}
	return nil
}
