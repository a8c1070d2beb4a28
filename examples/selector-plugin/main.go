// Command selector-plugin is a third-party loopkernel selector plugin in one
// file: a small level-triggered selector over poll(2), and the one call that
// serves it. Build it into a plugin directory, then list it, certify it and
// run a loop on it, by name from the directory or by path:
//
//	go build -o /tmp/plugins/loopkernel-plugin-example ./examples/selector-plugin
//	loopkernel plugins --plugin-dir=/tmp/plugins
//	loopkernel conformance --plugin-dir=/tmp/plugins --selector=plugin:example
//	LOOPKERNEL_PLUGIN_DIR=/tmp/plugins loopkernel --policy=plugin:example example hello
//	loopkernel --policy=plugin:/tmp/plugins/loopkernel-plugin-example example watch-fd
//
// (cmd/loopkernel's TestSelectorPluginExampleUsage runs these lines, so
// they stay true.) The host hands over copies of the descriptors to watch; this process never
// reads or writes them, it only reports readiness.
package main

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

func main() {
	plugin.Serve(plugin.Backends{Name: "example", Selector: newPollSelector})
}

type registration struct {
	fd       int
	interest sdk.Events
}

// pollSelector rebuilds its poll set on every Wait: simple rather than fast,
// which is the point of an example. Slot 0 of the set is a pipe that Wake
// writes to.
type pollSelector struct {
	mu     sync.Mutex // Wake and Close may race with Wait
	regs   map[sdk.Token]registration
	fds    []unix.PollFd
	toks   []sdk.Token
	wake   [2]int // read end, write end
	closed bool
}

func newPollSelector() (sdk.Selector, error) {
	s := &pollSelector{regs: make(map[sdk.Token]registration)}
	if err := unix.Pipe2(s.wake[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("example selector: wake pipe: %w", err)
	}
	return s, nil
}

func (s *pollSelector) Register(fd int, tok sdk.Token, interest sdk.Events) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return sdk.ErrSelectorClosed
	}
	if _, dup := s.regs[tok]; dup {
		return fmt.Errorf("register %v: %w", tok, sdk.ErrExists)
	}
	for t, r := range s.regs {
		if r.fd == fd {
			return fmt.Errorf("register fd %d: %w as %v", fd, sdk.ErrExists, t)
		}
	}
	s.regs[tok] = registration{fd: fd, interest: interest}
	return nil
}

func (s *pollSelector) Modify(tok sdk.Token, interest sdk.Events) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.regs[tok]
	if !ok {
		return fmt.Errorf("modify %v: %w", tok, sdk.ErrNotRegistered)
	}
	r.interest = interest
	s.regs[tok] = r
	return nil
}

func (s *pollSelector) Unregister(tok sdk.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.regs[tok]; !ok {
		return fmt.Errorf("unregister %v: %w", tok, sdk.ErrNotRegistered)
	}
	delete(s.regs, tok)
	return nil
}

func (s *pollSelector) Wait(events []sdk.Event, timeout time.Duration) (int, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, sdk.ErrSelectorClosed
	}
	s.fds = append(s.fds[:0], unix.PollFd{Fd: int32(s.wake[0]), Events: unix.POLLIN})
	s.toks = append(s.toks[:0], 0)
	for tok, r := range s.regs {
		var ev int16
		if r.interest&sdk.Read != 0 {
			ev |= unix.POLLIN
		}
		if r.interest&sdk.Write != 0 {
			ev |= unix.POLLOUT
		}
		if ev == 0 {
			continue // an empty interest set reports nothing, not even hangup
		}
		s.fds = append(s.fds, unix.PollFd{Fd: int32(r.fd), Events: ev})
		s.toks = append(s.toks, tok)
	}
	s.mu.Unlock()

	ms := -1
	if timeout >= 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	if _, err := unix.Poll(s.fds, ms); err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		return 0, fmt.Errorf("poll: %w", err)
	}
	if s.fds[0].Revents != 0 {
		var buf [64]byte
		for {
			if n, _ := unix.Read(s.wake[0], buf[:]); n <= 0 {
				break
			}
		}
	}
	n := 0
	for i := 1; i < len(s.fds) && n < len(events); i++ {
		re := s.fds[i].Revents
		var ev sdk.Events
		if re&unix.POLLIN != 0 {
			ev |= sdk.Read
		}
		if re&unix.POLLOUT != 0 {
			ev |= sdk.Write
		}
		if re&(unix.POLLERR|unix.POLLNVAL) != 0 {
			ev |= sdk.Error
		}
		if re&unix.POLLHUP != 0 {
			ev |= sdk.Hangup
		}
		if ev != 0 {
			events[n] = sdk.Event{Token: s.toks[i], Events: ev}
			n++
		}
	}
	return n, nil
}

func (s *pollSelector) Wake() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return sdk.ErrSelectorClosed
	}
	// A full pipe already means "wake": EAGAIN is success.
	if _, err := unix.Write(s.wake[1], []byte{1}); err != nil && err != unix.EAGAIN {
		return fmt.Errorf("wake: %w", err)
	}
	return nil
}

func (s *pollSelector) Capabilities() sdk.Capabilities {
	return sdk.Capabilities{Name: "example", RegularFiles: true}
}

func (s *pollSelector) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return sdk.ErrSelectorClosed
	}
	s.closed = true
	unix.Close(s.wake[0])
	unix.Close(s.wake[1])
	return nil
}
