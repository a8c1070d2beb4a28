package kernel

import (
	"errors"
	"fmt"

	"github.com/loopkernel/loopkernel/sdk"
)

// ioTable is the loop's record of the descriptors it has open in its I/O
// driver. A descriptor is opened once however many users it has (a
// transport, a server, a sock_* call in each direction, AddReader and
// AddWriter), so that their operations meet the driver's one-per-direction
// rule (sdk.ErrBusy, which the kernel reports as ErrFDBusy) instead of
// failing to open it twice; it is closed in the driver when its last user
// lets go.
type ioTable struct {
	m    map[int]*ioRef
	free []*ioRef // released refs, reused: a sock_* call takes one per call
}

// ioRef is one descriptor open in the driver and its users.
type ioRef struct {
	fd             int
	f              sdk.FD
	users          int
	reader, writer bool // AddReader / AddWriter hold it
	embedded       bool // lives inside its first user (a transport), not pooled
	// closeLast closes the descriptor itself once the last hold is gone:
	// set when its owner (a transport) let go while sock_* operations
	// still held it, so the number is never closed, and reused by the next
	// accept, while the driver still knows it.
	closeLast func() error
	// transport is the transport using the descriptor, if any: AddReader,
	// AddWriter and the sock_* calls refuse it while it is open
	// (ensureNoTransport).
	transport transportOwner
	// sockw is the sock_* call waiting on the descriptor in each direction
	// (0 read, 1 write), so that a new call can take over from one whose
	// task was cancelled but has not resumed yet (see getWait).
	sockw [2]*sockWait
}

func (t *ioTable) reset() { t.m, t.free = nil, nil }

// acquireIO opens fd in the driver, or takes another hold on it.
func (l *Loop) acquireIO(fd int) (*ioRef, error) { return l.acquireIOInto(fd, nil) }

// acquireIOInto is acquireIO for a user that keeps an ioRef of its own
// (a transport, saving an allocation per connection): if fd is not open
// yet, own becomes its record.
func (l *Loop) acquireIOInto(fd int, own *ioRef) (*ioRef, error) {
	if r := l.files.m[fd]; r != nil {
		r.users++
		return r, nil
	}
	if l.closed.Load() {
		return nil, ErrClosed
	}
	f, err := l.drv.Open(fd)
	if err != nil {
		return nil, err
	}
	if l.files.m == nil {
		l.files.m = make(map[int]*ioRef)
	}
	r := own
	switch n := len(l.files.free); {
	case own != nil:
	case n > 0:
		r = l.files.free[n-1]
		l.files.free = l.files.free[:n-1]
	default:
		r = new(ioRef)
	}
	*r = ioRef{fd: fd, f: f, users: 1, embedded: own != nil}
	l.files.m[fd] = r
	return r, nil
}

// releaseIO drops a hold; the last one closes the descriptor in the driver
// (cancelling what is still pending on it), after which the kernel may
// close the descriptor itself.
func (l *Loop) releaseIO(r *ioRef) {
	if r == nil || r.users == 0 {
		return
	}
	if r.users--; r.users > 0 {
		return
	}
	f := r.f
	if l.files.m[r.fd] == r {
		delete(l.files.m, r.fd)
		if !r.embedded && len(l.files.free) < maxFreeRefs {
			l.files.free = append(l.files.free, r)
		}
	}
	if err := f.Close(); err != nil && !l.closed.Load() {
		l.logger.Warn("closing a descriptor in the I/O driver failed", "fd", r.fd, "error", err)
	}
	if closeLast := r.closeLast; closeLast != nil {
		r.closeLast = nil
		if err := closeLast(); err != nil {
			l.logger.Warn("closing a descriptor its owner had let go of failed", "fd", r.fd, "error", err)
		}
	}
}

// maxFreeRefs bounds the free list of ioRefs.
const maxFreeRefs = 64

// busyErr reports a driver refusal for a second operation in the same
// direction as the kernel's ErrFDBusy.
func busyErr(op string, fd int, err error) error {
	if errors.Is(err, sdk.ErrBusy) {
		return fmt.Errorf("%s: fd %d: %w", op, fd, ErrFDBusy)
	}
	return fmt.Errorf("%s: fd %d: %w", op, fd, err)
}
