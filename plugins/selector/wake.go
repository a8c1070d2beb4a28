package selector

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopkernel/loopkernel/sdk"
	"golang.org/x/sys/unix"
)

// waker is the cross-goroutine wake-up both selectors share: an eventfd that
// the selector watches alongside the registrations, plus a flag that makes a
// burst of Wake calls cost a single write(2).
//
// Ordering that makes the flag safe: Wake sets pending before writing, and the
// loop reads (drains) the eventfd before clearing pending. A Wake that finds
// pending already set therefore lands either before the drain, where the
// write it skipped was not needed because the returning Wait already counts
// as its wake-up, or after the clear, where it writes again. Clearing before
// draining would instead lose a wake-up for good: the counter would be zero
// while pending stayed set.
type waker struct {
	fd      int
	pending atomic.Bool
	closed  atomic.Bool
	// mu keeps Close from closing fd while a Wake on another goroutine is
	// between its closed check and its write, which could otherwise hit a
	// descriptor number that was reused in the meantime.
	mu    sync.RWMutex
	one   [8]byte // the eventfd increment, 1 in host byte order; read-only
	drain [8]byte // scratch for the loop's read; touched only by the loop
}

func (w *waker) open() error {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("eventfd", err)
	}
	w.fd = fd
	binary.NativeEndian.PutUint64(w.one[:], 1)
	return nil
}

// wake implements Selector.Wake for the owning selector called name.
func (w *waker) wake(name string) error {
	if w.closed.Load() {
		return fmt.Errorf("%s: wake: %w", name, sdk.ErrSelectorClosed)
	}
	if !w.pending.CompareAndSwap(false, true) {
		return nil // a wake-up is already on its way; coalesce
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed.Load() {
		return fmt.Errorf("%s: wake: %w", name, sdk.ErrSelectorClosed)
	}
	for {
		_, err := unix.Write(w.fd, w.one[:])
		switch err {
		case nil, unix.EAGAIN:
			// EAGAIN means the counter is saturated, which is still "readable".
			return nil
		case unix.EINTR:
			continue
		default:
			w.pending.Store(false)
			return fmt.Errorf("%s: wake: %w", name, os.NewSyscallError("write eventfd", err))
		}
	}
}

// consume is called by the loop when the eventfd was reported readable.
func (w *waker) consume() {
	_, _ = unix.Read(w.fd, w.drain[:]) // EAGAIN: a racing consume already drained it
	w.pending.Store(false)
}

// close marks the waker closed and releases the eventfd. It reports whether
// this call was the one that closed it.
func (w *waker) close() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Swap(true) {
		return false, nil
	}
	if err := unix.Close(w.fd); err != nil {
		return true, os.NewSyscallError("close eventfd", err)
	}
	return true, nil
}

// isClosed is the loop-side check every Selector method starts with.
func (w *waker) isClosed() bool { return w.closed.Load() }

// msTimeout converts a Wait timeout to the millisecond argument epoll_wait
// takes: negative means forever, and anything else is rounded up, never down,
// so that a Wait never returns before its timeout (a loop that wakes early
// for a timer just spins through another iteration).
func msTimeout(d time.Duration) int {
	if d < 0 {
		return -1
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	const max = 1<<31 - 1
	if ms > max {
		return max
	}
	return int(ms)
}

// checkFD reports whether fd names an open descriptor. Both selectors call it
// where the system would otherwise accept a bad descriptor silently: poll(2)
// only reports POLLNVAL on the next wait, and an epoll registration with an
// empty interest set never reaches epoll_ctl.
func checkFD(fd int) error {
	if fd < 0 {
		return unix.EBADF
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return os.NewSyscallError("fcntl", err)
	}
	return nil
}
