package selector

import (
	"fmt"
	"os"
	"time"

	"github.com/loopkernel/loopkernel/sdk"
	"golang.org/x/sys/unix"
)

type pollReg struct {
	tok      sdk.Token
	fd       int
	interest sdk.Events
}

// pollSelector is the level-triggered poll(2) selector.
//
// poll takes the whole descriptor set on every call, so the set is kept as
// the dense array poll wants: slot 0 is the wake eventfd, registrations fill
// the rest, and removal swaps the last entry into the hole so the array never
// has gaps. Two maps find a registration's index by token and by descriptor.
//
// A registration with an empty interest set keeps its slot with fd -1, which
// poll skips entirely; events=0 would still report POLLHUP and POLLERR.
//
// It uses ppoll rather than poll for the nanosecond timeout: Wait then never
// rounds a timer's deadline, and the timespec lives in the selector so that
// Wait does not allocate.
type pollSelector struct {
	w      waker
	pfds   []unix.PollFd // pfds[0] is the wake eventfd
	regs   []pollReg     // parallel to pfds; regs[0] is unused
	byTok  map[sdk.Token]int
	byFd   map[int]int
	cursor int // where the next scan starts, so a small events buffer cannot starve high slots
	ts     unix.Timespec
}

// NewPoll returns a level-triggered selector over poll(2). Unlike epoll it
// accepts regular files, which poll reports as always readable and writable.
func NewPoll() (sdk.Selector, error) {
	s := &pollSelector{
		byTok:  make(map[sdk.Token]int),
		byFd:   make(map[int]int),
		cursor: 1,
	}
	if err := s.w.open(); err != nil {
		return nil, fmt.Errorf("poll: %w", err)
	}
	s.pfds = append(s.pfds, unix.PollFd{Fd: int32(s.w.fd), Events: unix.POLLIN})
	s.regs = append(s.regs, pollReg{fd: s.w.fd})
	return s, nil
}

func toPoll(e sdk.Events) int16 {
	var m int16
	if e&sdk.Read != 0 {
		m |= unix.POLLIN
	}
	if e&sdk.Write != 0 {
		m |= unix.POLLOUT
	}
	return m
}

func fromPoll(m int16) sdk.Events {
	var e sdk.Events
	if m&unix.POLLIN != 0 {
		e |= sdk.Read
	}
	if m&unix.POLLOUT != 0 {
		e |= sdk.Write
	}
	if m&(unix.POLLERR|unix.POLLNVAL) != 0 {
		e |= sdk.Error
	}
	if m&unix.POLLHUP != 0 {
		e |= sdk.Hangup
	}
	return e
}

// pollFd is what goes into the array for a registration: -1 while it has no
// interest, so that poll ignores it.
func pollFd(fd int, interest sdk.Events) unix.PollFd {
	if !active(interest) {
		return unix.PollFd{Fd: -1}
	}
	return unix.PollFd{Fd: int32(fd), Events: toPoll(interest)}
}

func (s *pollSelector) Register(fd int, tok sdk.Token, interest sdk.Events) error {
	if s.w.isClosed() {
		return fmt.Errorf("poll: register fd %d as %v: %w", fd, tok, sdk.ErrSelectorClosed)
	}
	if _, ok := s.byTok[tok]; ok {
		return fmt.Errorf("poll: register fd %d as %v: token %w", fd, tok, sdk.ErrExists)
	}
	if i, ok := s.byFd[fd]; ok {
		return fmt.Errorf("poll: register fd %d as %v: fd %w as %v", fd, tok, sdk.ErrExists, s.regs[i].tok)
	}
	// poll would accept a closed descriptor and only say POLLNVAL later; the
	// seam wants the mistake reported where it was made.
	if err := checkFD(fd); err != nil {
		return fmt.Errorf("poll: register fd %d as %v: %w", fd, tok, err)
	}
	s.byTok[tok] = len(s.pfds)
	s.byFd[fd] = len(s.pfds)
	s.pfds = append(s.pfds, pollFd(fd, interest))
	s.regs = append(s.regs, pollReg{tok: tok, fd: fd, interest: interest})
	return nil
}

func (s *pollSelector) Modify(tok sdk.Token, interest sdk.Events) error {
	if s.w.isClosed() {
		return fmt.Errorf("poll: modify %v: %w", tok, sdk.ErrSelectorClosed)
	}
	i, ok := s.byTok[tok]
	if !ok {
		return fmt.Errorf("poll: modify %v: %w", tok, sdk.ErrNotRegistered)
	}
	s.regs[i].interest = interest
	s.pfds[i] = pollFd(s.regs[i].fd, interest)
	return nil
}

func (s *pollSelector) Unregister(tok sdk.Token) error {
	if s.w.isClosed() {
		return fmt.Errorf("poll: unregister %v: %w", tok, sdk.ErrSelectorClosed)
	}
	i, ok := s.byTok[tok]
	if !ok {
		return fmt.Errorf("poll: unregister %v: %w", tok, sdk.ErrNotRegistered)
	}
	delete(s.byTok, tok)
	delete(s.byFd, s.regs[i].fd)
	last := len(s.pfds) - 1
	if i != last {
		s.pfds[i] = s.pfds[last]
		s.regs[i] = s.regs[last]
		s.byTok[s.regs[i].tok] = i
		s.byFd[s.regs[i].fd] = i
	}
	s.pfds = s.pfds[:last]
	s.regs[last] = pollReg{}
	s.regs = s.regs[:last]
	if s.cursor >= len(s.pfds) {
		s.cursor = 1
	}
	return nil
}

func (s *pollSelector) Wait(events []sdk.Event, timeout time.Duration) (int, error) {
	if s.w.isClosed() {
		return 0, fmt.Errorf("poll: wait: %w", sdk.ErrSelectorClosed)
	}
	var ts *unix.Timespec
	if timeout >= 0 {
		s.ts = unix.NsecToTimespec(int64(timeout))
		ts = &s.ts
	}
	n, err := unix.Ppoll(s.pfds, ts, nil)
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		return 0, fmt.Errorf("poll: wait: %w", os.NewSyscallError("ppoll", err))
	}
	if n == 0 {
		return 0, nil
	}
	if s.pfds[0].Revents != 0 {
		s.w.consume()
		n--
	}
	out := 0
	size := len(s.pfds)
	i := s.cursor
	for scanned := 1; scanned < size && n > 0; scanned++ {
		if rev := s.pfds[i].Revents; rev != 0 {
			if out == len(events) {
				s.cursor = i // start here next time: this one was left out
				return out, nil
			}
			events[out] = sdk.Event{Token: s.regs[i].tok, Events: fromPoll(rev)}
			out++
			n--
		}
		if i++; i == size {
			i = 1
		}
	}
	return out, nil
}

func (s *pollSelector) Wake() error { return s.w.wake("poll") }

func (s *pollSelector) Capabilities() sdk.Capabilities {
	return sdk.Capabilities{Name: "poll", RegularFiles: true}
}

// Close releases the wake descriptor; the registered descriptors stay open,
// they belong to the caller.
func (s *pollSelector) Close() error {
	first, err := s.w.close()
	if !first {
		return fmt.Errorf("poll: close: %w", sdk.ErrSelectorClosed)
	}
	s.pfds, s.regs, s.byTok, s.byFd = nil, nil, nil, nil
	if err != nil {
		return fmt.Errorf("poll: close: %w", err)
	}
	return nil
}
