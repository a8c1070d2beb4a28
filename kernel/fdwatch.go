package kernel

import (
	"errors"
	"fmt"

	"github.com/loopkernel/loopkernel/sdk"
)

// Descriptor watching (asyncio's add_reader family) is a capability of the
// I/O driver (sdk.CapWatch), as Twisted's IReactorFDSet is of a reactor: a
// readiness driver has it for free, a completion driver provides it through
// a poll operation, and a driver without it refuses these calls with an
// error that names the capability.

// AddReader watches fd for read readiness and calls fn each time it is
// readable (level-triggered: until the data is consumed or the reader
// removed). A second AddReader for the same fd replaces the callback.
func (l *Loop) AddReader(fd int, fn func()) error { return l.addWatch(fd, sdk.Read, fn) }

// AddWriter watches fd for write readiness, as AddReader.
func (l *Loop) AddWriter(fd int, fn func()) error { return l.addWatch(fd, sdk.Write, fn) }

// RemoveReader stops watching fd for reading; it reports whether fd was
// being watched.
func (l *Loop) RemoveReader(fd int) (bool, error) { return l.removeWatch(fd, sdk.Read) }

// RemoveWriter stops watching fd for writing; it reports whether fd was
// being watched.
func (l *Loop) RemoveWriter(fd int) (bool, error) { return l.removeWatch(fd, sdk.Write) }

func (l *Loop) addWatch(fd int, ev sdk.Events, fn func()) error {
	op := "add reader"
	if ev == sdk.Write {
		op = "add writer"
	}
	if err := l.checkUsable(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if fd < 0 {
		return fmt.Errorf("%s: fd %d: %w", op, fd, ErrInvalidFD)
	}
	if fn == nil {
		return fmt.Errorf("%s: fd %d: %w", op, fd, ErrNilCallback)
	}
	if err := l.ensureNoTransport(op, fd); err != nil {
		return err
	}
	if c := l.drv.Capabilities(); !c.Has(sdk.CapWatch) {
		return fmt.Errorf("%s: fd %d: driver %q lacks capability %q: %w", op, fd, c.Name, sdk.CapWatch, sdk.ErrUnsupported)
	}
	r := l.files.m[fd]
	held := r != nil && (ev == sdk.Read && r.reader || ev == sdk.Write && r.writer)
	if !held {
		var err error
		if r, err = l.acquireIO(fd); err != nil {
			return fmt.Errorf("%s: fd %d: %w", op, fd, err)
		}
	}
	if err := r.f.Watch(ev, fn); err != nil {
		if !held {
			l.releaseIO(r)
		}
		return busyErr(op, fd, err)
	}
	if ev == sdk.Read {
		r.reader = true
	} else {
		r.writer = true
	}
	return nil
}

// ErrFDUsedByTransport: AddReader, AddWriter or a sock_* call on a
// descriptor an open transport is using. Taking it over would starve the
// transport of its data (or interleave writes with its own), so asyncio
// refuses it too ("File descriptor N is used by transport T").
var ErrFDUsedByTransport = errors.New("file descriptor is used by a transport")

// ensureNoTransport refuses fd while an open transport uses it; one that is
// closing no longer counts, as in asyncio.
func (l *Loop) ensureNoTransport(op string, fd int) error {
	if r := l.files.m[fd]; r != nil && r.transport != nil && !r.transport.IsClosing() {
		return fmt.Errorf("%s: file descriptor %d is used by transport %v: %w", op, fd, r.transport, ErrFDUsedByTransport)
	}
	return nil
}

func (l *Loop) removeWatch(fd int, ev sdk.Events) (bool, error) {
	if l.closed.Load() {
		return false, nil // Close dropped every watch; as asyncio, report none
	}
	if err := l.checkUsable(); err != nil {
		return false, fmt.Errorf("remove watch: %w", err)
	}
	r := l.files.m[fd]
	if r == nil {
		return false, nil
	}
	flag := &r.reader
	if ev == sdk.Write {
		flag = &r.writer
	}
	if !*flag {
		return false, nil
	}
	*flag = false
	r.f.Unwatch(ev)
	l.releaseIO(r)
	return true, nil
}
