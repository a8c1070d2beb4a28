package plugin

import (
	"errors"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Descriptors under pressure. A host serving many connections can run out
// of descriptors (EMFILE); it must still be able to restart a plugin,
// which takes a socketpair, two pipes, the fork's own pipe and the gRPC
// connection. So the host keeps a small reserve of descriptors (copies of
// /dev/null, close-on-exec) open from its first plugin start on, and a
// start that fails for want of descriptors releases the reserve and tries
// again. The reserve also makes the host, not the plugin, the first to run
// out: the plugin holds a copy of every registered descriptor plus its
// own, so with equal limits it would run out first; with the host's
// reserve the host's accept fails with EMFILE instead, which its loop
// answers by pausing accepts, as in process.
//
// Both processes run with their soft RLIMIT_NOFILE raised to the hard
// limit: Go raises its own at start (since Go 1.19) but hands children the
// original soft limit, so the host raises the plugin's (prlimit) as soon
// as it has started it, which matters for a plugin not written in Go.

// reserveFDs is the size of the reserve: a start's needs (some 8) several
// times over, and more than the plugin's own descriptors exceed the
// host's, so that the host's accept fails first with room to spare.
const reserveFDs = 32

var reserve struct {
	once sync.Once
	mu   sync.Mutex // held while the reserve is released for a start
	fds  []int
}

// holdReserve fills the reserve, once per process.
func holdReserve() {
	reserve.once.Do(func() {
		reserve.mu.Lock()
		defer reserve.mu.Unlock()
		refillReserve()
	})
}

// refillReserve tops the reserve up as far as descriptors allow;
// reserve.mu must be held.
func refillReserve() {
	for len(reserve.fds) < reserveFDs {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		reserve.fds = append(reserve.fds, fd)
	}
}

// withReserve runs start; if it failed for want of descriptors, it
// releases the reserve, runs it again, and refills the reserve with
// whatever is free afterwards. Starts that need the reserve take turns.
func withReserve[T any](start func() (T, error)) (T, error) {
	v, err := start()
	if !outOfDescriptors(err) {
		return v, err
	}
	reserve.mu.Lock()
	defer reserve.mu.Unlock()
	for _, fd := range reserve.fds {
		unix.Close(fd)
	}
	reserve.fds = reserve.fds[:0]
	v, err = start()
	refillReserve()
	return v, err
}

// outOfDescriptors reports whether err says the process (EMFILE) or the
// system (ENFILE) ran out of descriptors. Some layers (go-plugin, gRPC)
// pass errors on as text, hence the second test.
func outOfDescriptors(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, unix.EMFILE.Error()) || strings.Contains(msg, unix.ENFILE.Error())
}

// raiseChildLimit sets pid's soft RLIMIT_NOFILE to its hard limit (which
// it inherited from this process). Best effort: a plugin that cannot be
// raised runs with the limit it has.
func raiseChildLimit(pid int) {
	var lim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil || lim.Cur >= lim.Max {
		return
	}
	lim.Cur = lim.Max
	_ = unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil)
}
