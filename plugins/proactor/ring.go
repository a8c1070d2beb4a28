package proactor

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrRefused: this process may not use io_uring (the kernel lacks it, the
// kernel.io_uring_disabled sysctl forbids it, or a seccomp profile such as
// Docker's default blocks its system calls). The error that wraps it says
// which, and names the epoll policy to use instead.
var ErrRefused = errors.New("io_uring refused")

// ring is one io_uring instance: its descriptor and the three shared
// mappings (submission ring, completion ring, submission entries). It is
// used from one goroutine; only the eventfd write of a wake-up comes from
// others, and that does not touch the ring.
type ring struct {
	fd       int
	features uint32

	sqMem, cqMem, sqeMem []byte

	sqHead, sqTail *uint32
	sqMask         uint32
	sqEntries      uint32
	sqArray        []uint32
	sqes           []sqe
	sqLocal        uint32 // our tail: entries written, published to the kernel by enter

	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           []cqe
}

// setupRing creates a ring of at least entries submission entries and four
// times as many completion entries (multishot operations complete many
// times per submission).
func setupRing(entries uint32) (*ring, error) {
	p := params{flags: setupCQSize | setupClamp | setupSubmitAll, cqEntries: 4 * entries}
	fd, e := ioUringSetup(entries, &p)
	if e != 0 {
		return nil, refused(e)
	}
	r := &ring{fd: int(fd), features: p.features}
	if err := r.check(); err != nil {
		unix.Close(r.fd)
		return nil, err
	}
	if err := r.mapRings(&p); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// ioUringSetup is io_uring_setup(2); a variable so that the package's
// tests can make it fail as a seccomp profile or the sysctl would.
var ioUringSetup = func(entries uint32, p *params) (uintptr, syscall.Errno) {
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	return fd, e
}

// refused explains why io_uring_setup failed, as precisely as the system
// allows, and points at the readiness policy.
func refused(e syscall.Errno) error {
	why := e.Error()
	switch e {
	case unix.ENOSYS:
		why = "io_uring_setup: function not implemented (ENOSYS): the kernel has no io_uring, or a seccomp profile answers ENOSYS for it"
	case unix.EPERM:
		why = "io_uring_setup: operation not permitted (EPERM)"
		if b, err := os.ReadFile("/proc/sys/kernel/io_uring_disabled"); err == nil {
			switch strings.TrimSpace(string(b)) {
			case "2":
				why += "; sysctl kernel.io_uring_disabled=2 disables it for everyone"
			case "1":
				why += "; sysctl kernel.io_uring_disabled=1 allows it only to the io_uring_group and CAP_SYS_ADMIN"
			default:
				why += "; a seccomp profile (Docker's default blocks io_uring, moby#46762) or an LSM refused it"
			}
		}
	}
	return fmt.Errorf("%w: %s; use the readiness policy \"epoll\" instead: %w", ErrRefused, why, e)
}

// check refuses kernels without what the back-end relies on: completions
// never dropped, submission data (iovecs, msghdrs, addresses) copied at
// submission, and timed waits in io_uring_enter.
func (r *ring) check() error {
	need := []struct {
		bit  uint32
		name string
	}{
		{featSingleMmap, "IORING_FEAT_SINGLE_MMAP"},
		{featNoDrop, "IORING_FEAT_NODROP"},
		{featSubmitStable, "IORING_FEAT_SUBMIT_STABLE"},
		{featExtArg, "IORING_FEAT_EXT_ARG"},
	}
	for _, n := range need {
		if r.features&n.bit == 0 {
			return fmt.Errorf("%w: the kernel's io_uring lacks %s (Linux 5.11 or later needed); use the readiness policy \"epoll\" instead", ErrRefused, n.name)
		}
	}
	return nil
}

func (r *ring) mapRings(p *params) error {
	sqSize := int(p.sqOff.array + p.sqEntries*4)
	cqSize := int(p.cqOff.cqes + p.cqEntries*uint32(unsafe.Sizeof(cqe{})))
	size := max(sqSize, cqSize) // IORING_FEAT_SINGLE_MMAP: one mapping holds both rings
	mem, err := unix.Mmap(r.fd, offSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("io_uring: mmap rings: %w", err)
	}
	r.sqMem, r.cqMem = mem, mem
	sqeMem, err := unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("io_uring: mmap submission entries: %w", err)
	}
	r.sqeMem = sqeMem
	base := unsafe.Pointer(&mem[0])
	r.sqHead = (*uint32)(unsafe.Add(base, p.sqOff.head))
	r.sqTail = (*uint32)(unsafe.Add(base, p.sqOff.tail))
	r.sqMask = *(*uint32)(unsafe.Add(base, p.sqOff.ringMask))
	r.sqEntries = *(*uint32)(unsafe.Add(base, p.sqOff.ringEntries))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Add(base, p.sqOff.array)), p.sqEntries)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&sqeMem[0])), p.sqEntries)
	r.cqHead = (*uint32)(unsafe.Add(base, p.cqOff.head))
	r.cqTail = (*uint32)(unsafe.Add(base, p.cqOff.tail))
	r.cqMask = *(*uint32)(unsafe.Add(base, p.cqOff.ringMask))
	r.cqes = unsafe.Slice((*cqe)(unsafe.Add(base, p.cqOff.cqes)), p.cqEntries)
	r.sqLocal = atomic.LoadUint32(r.sqTail)
	return nil
}

// pending is how many entries are queued but not yet consumed by the
// kernel.
func (r *ring) pending() uint32 { return r.sqLocal - atomic.LoadUint32(r.sqHead) }

// next returns a zeroed submission entry to fill, or nil when the ring is
// full (the caller flushes and asks again).
func (r *ring) next() *sqe {
	if r.pending() >= r.sqEntries {
		return nil
	}
	i := r.sqLocal & r.sqMask
	e := &r.sqes[i]
	*e = sqe{}
	r.sqArray[i] = i
	r.sqLocal++
	return e
}

// publish makes the entries written so far visible to the kernel.
func (r *ring) publish() { atomic.StoreUint32(r.sqTail, r.sqLocal) }

// enter submits what is queued and, with wait, blocks until a completion
// arrives or arg's timeout (nil: none) passes. EINTR, ETIME and EBUSY (the
// completion queue is backed up: reap first) are not failures.
func (r *ring) enter(wait bool, arg *getEventsArg) error {
	r.publish()
	var minComplete, flags uintptr
	var argp, argsz uintptr
	if wait {
		minComplete, flags = 1, enterGetEvents
	}
	if arg != nil {
		flags |= enterExtArg
		argp, argsz = uintptr(unsafe.Pointer(arg)), unsafe.Sizeof(*arg)
	}
	_, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(r.pending()), minComplete, flags, argp, argsz)
	switch e {
	case 0, unix.EINTR, unix.ETIME, unix.EBUSY, unix.EAGAIN:
		return nil
	}
	return fmt.Errorf("io_uring_enter: %w", e)
}

// ready is how many completions wait in the completion ring.
func (r *ring) ready() uint32 { return atomic.LoadUint32(r.cqTail) - *r.cqHead }

// peek returns the completion at the head; only valid if ready() > 0.
func (r *ring) peek() *cqe { return &r.cqes[*r.cqHead&r.cqMask] }

// advance consumes n completions.
func (r *ring) advance(n uint32) { atomic.StoreUint32(r.cqHead, *r.cqHead+n) }

// register is io_uring_register(2).
func (r *ring) register(op uintptr, arg unsafe.Pointer, nr uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), op, uintptr(arg), nr, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// close releases the mappings and the ring; the kernel cancels what is
// still in flight.
func (r *ring) close() error {
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
	}
	if r.sqMem != nil {
		unix.Munmap(r.sqMem)
	}
	r.sqMem, r.cqMem, r.sqeMem = nil, nil, nil
	return unix.Close(r.fd)
}
