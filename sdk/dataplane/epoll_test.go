package dataplane

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// testEpoll is a minimal level-triggered epoll sdk.Selector, enough to
// serve the data plane in tests while the real back-ends live elsewhere.
// regularFiles lets a test make it claim a capability epoll lacks, to
// drive the plugin-side error path.
type testEpoll struct {
	epfd, evfd   int
	regs         map[sdk.Token]int
	buf          []unix.EpollEvent
	closed       atomic.Bool
	regularFiles bool
}

// evToken is the internal token of the wake eventfd.
const evToken = ^sdk.Token(0)

func newTestEpoll() (*testEpoll, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	e := &testEpoll{epfd: epfd, evfd: evfd, regs: map[sdk.Token]int{}, buf: make([]unix.EpollEvent, 128)}
	if err := e.ctl(unix.EPOLL_CTL_ADD, evfd, evToken, sdk.Read); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *testEpoll) ctl(op, fd int, tok sdk.Token, in sdk.Events) error {
	ev := unix.EpollEvent{Fd: int32(uint32(tok)), Pad: int32(uint32(tok >> 32))}
	if in&sdk.Read != 0 {
		ev.Events |= unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if in&sdk.Write != 0 {
		ev.Events |= unix.EPOLLOUT
	}
	return unix.EpollCtl(e.epfd, op, fd, &ev)
}

func (e *testEpoll) Register(fd int, tok sdk.Token, in sdk.Events) error {
	if e.closed.Load() {
		return sdk.ErrSelectorClosed
	}
	if _, ok := e.regs[tok]; ok {
		return sdk.ErrExists
	}
	if err := e.ctl(unix.EPOLL_CTL_ADD, fd, tok, in); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("epoll add: %w", sdk.ErrExists)
		}
		return fmt.Errorf("epoll add: %w", err)
	}
	e.regs[tok] = fd
	return nil
}

func (e *testEpoll) Modify(tok sdk.Token, in sdk.Events) error {
	fd, ok := e.regs[tok]
	if !ok {
		return sdk.ErrNotRegistered
	}
	return e.ctl(unix.EPOLL_CTL_MOD, fd, tok, in)
}

func (e *testEpoll) Unregister(tok sdk.Token) error {
	fd, ok := e.regs[tok]
	if !ok {
		return sdk.ErrNotRegistered
	}
	delete(e.regs, tok)
	return unix.EpollCtl(e.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

func (e *testEpoll) Wait(events []sdk.Event, timeout time.Duration) (int, error) {
	if e.closed.Load() {
		return 0, sdk.ErrSelectorClosed
	}
	ms := -1
	if timeout >= 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	max := min(len(events)+1, len(e.buf))
	var n int
	var err error
	for {
		n, err = unix.EpollWait(e.epfd, e.buf[:max], ms)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return 0, err
	}
	out := 0
	for _, ev := range e.buf[:n] {
		tok := sdk.Token(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32)
		if tok == evToken {
			var b [8]byte
			unix.Read(e.evfd, b[:])
			continue
		}
		var r sdk.Events
		if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 {
			r |= sdk.Read
		}
		if ev.Events&unix.EPOLLOUT != 0 {
			r |= sdk.Write
		}
		if ev.Events&unix.EPOLLERR != 0 {
			r |= sdk.Error
		}
		if ev.Events&unix.EPOLLHUP != 0 {
			r |= sdk.Hangup
		}
		if out < len(events) {
			events[out] = sdk.Event{Token: tok, Events: r}
			out++
		}
	}
	return out, nil
}

func (e *testEpoll) Wake() error {
	b := [8]byte{1}
	_, err := unix.Write(e.evfd, b[:])
	if err == unix.EAGAIN {
		return nil
	}
	return err
}

func (e *testEpoll) Capabilities() sdk.Capabilities {
	return sdk.Capabilities{Name: "test-epoll", RegularFiles: e.regularFiles}
}

func (e *testEpoll) Close() error {
	if e.closed.Swap(true) {
		return sdk.ErrSelectorClosed
	}
	unix.Close(e.evfd)
	return unix.Close(e.epfd)
}
