package executor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// How a process pool's call reaches its worker. The worker is the bundled
// goroutine executor served over the call plane (sdk/dataplane, WIRE.md §8),
// unchanged; the pool does not call the user's function there directly but
// the function registered below as runFunc, whose argument is an envelope:
// a fixed header (the user's function, the call's deadline, where the
// argument is), then the function's name and, when it is small, the
// argument itself. The envelope is what lets a pool do three things the
// plain call plane does not:
//
//   - large arguments and results go through two memfds the host made for
//     that worker, which the worker opens by /proc/HOSTPID/fd/N (the call
//     plane carries no descriptors, §8.1), instead of through the socket in
//     64 KiB frames, so a 100 MiB argument costs one copy in and a mapping
//     out rather than a copy per frame on each side;
//   - the call's deadline travels, so the function sees ctx.Deadline();
//   - runFunc holds the worker's one run slot for the call's length, so that
//     idleFunc, which waits for that slot, tells the pool when a call it
//     abandoned (its caller gave up) has really ended in the worker.
//
// Every process of the program registers both functions from this
// package's init, the worker included, since it is the same program.

const (
	runFuncName   = "loopkernel/process.run"
	idleFuncName  = "loopkernel/process.idle"
	setupFuncName = "loopkernel/process.setup"
)

func init() {
	sdk.RegisterFunc(runFuncName, workerRun)
	sdk.RegisterFunc(idleFuncName, workerIdle)
	sdk.RegisterFunc(setupFuncName, workerSetup)
}

// workerSetup is the first call a pool makes to a new worker: the
// argument is the worker's GOMAXPROCS in decimal (0: leave it).
func workerSetup(_ context.Context, arg []byte) ([]byte, error) {
	n, err := strconv.Atoi(string(arg))
	if err != nil || n < 0 {
		return nil, fmt.Errorf("process pool: setup %q: %w", arg, errEnvelope)
	}
	if n > 0 {
		runtime.GOMAXPROCS(n)
	}
	return nil, nil
}

// Envelope header (little-endian), 40 bytes, then the name, then the inline
// argument (absent when flagArgShm is set):
//
//	0  u8   version (1)
//	1  u8   flags: bit 0 the argument is in the argument memfd
//	2  u16  name length
//	4  u32  reserved, 0
//	8  i64  deadline, Unix nanoseconds; 0 for none
//	16 u32  the host's pid (whose /proc/PID/fd holds the memfds)
//	20 i32  argument memfd, in the host; -1 for none
//	24 i32  result memfd, in the host; -1 for none
//	28 u32  result threshold: a result this long or longer goes to the result memfd
//	32 u64  argument length, when it is in the memfd
//
// Result header, 16 bytes, then the inline result (absent when flagResShm):
//
//	0  u8   flags: bit 0 the result is in the result memfd
//	1  7    reserved, 0
//	8  u64  result length, when it is in the memfd
const (
	envVersion   = 1
	envHeaderLen = 40
	resHeaderLen = 16
	flagArgShm   = 1
	flagResShm   = 1
	maxNameLen   = 256
)

var le = binary.LittleEndian

// envelope is a decoded call envelope.
type envelope struct {
	flags     uint8
	name      string
	deadline  int64
	hostPID   int
	argFD     int
	resFD     int
	threshold uint32
	argLen    uint64
	inline    []byte
}

// errEnvelope marks an envelope the worker cannot read: only a host of
// another version of this program sends one.
var errEnvelope = errors.New("process pool: malformed call envelope")

// appendEnvelope writes the header and name for e to dst; the caller
// appends the inline argument, if any.
func appendEnvelope(dst []byte, e *envelope) []byte {
	var h [envHeaderLen]byte
	h[0] = envVersion
	h[1] = e.flags
	le.PutUint16(h[2:], uint16(len(e.name)))
	le.PutUint64(h[8:], uint64(e.deadline))
	le.PutUint32(h[16:], uint32(e.hostPID))
	le.PutUint32(h[20:], uint32(int32(e.argFD)))
	le.PutUint32(h[24:], uint32(int32(e.resFD)))
	le.PutUint32(h[28:], e.threshold)
	le.PutUint64(h[32:], e.argLen)
	dst = append(dst, h[:]...)
	return append(dst, e.name...)
}

func decodeEnvelope(b []byte) (envelope, error) {
	var e envelope
	if len(b) < envHeaderLen || b[0] != envVersion || b[1]&^flagArgShm != 0 || le.Uint32(b[4:]) != 0 {
		return e, errEnvelope
	}
	n := int(le.Uint16(b[2:]))
	if n == 0 || n > maxNameLen || len(b) < envHeaderLen+n {
		return e, errEnvelope
	}
	e.flags = b[1]
	e.deadline = int64(le.Uint64(b[8:]))
	e.hostPID = int(le.Uint32(b[16:]))
	e.argFD = int(int32(le.Uint32(b[20:])))
	e.resFD = int(int32(le.Uint32(b[24:])))
	e.threshold = le.Uint32(b[28:])
	e.argLen = le.Uint64(b[32:])
	e.name = string(b[envHeaderLen : envHeaderLen+n])
	e.inline = b[envHeaderLen+n:]
	if e.flags&flagArgShm != 0 && (len(e.inline) != 0 || e.argFD < 0) {
		return e, errEnvelope
	}
	return e, nil
}

// The worker's state. runSlot is held by runFunc for the length of a call:
// a pool sends a worker one call at a time, so it is never contended except
// by idleFunc after an abandoned call. shm caches the host's memfds, opened
// once by /proc path; only the holder of runSlot touches it.
var (
	runSlot = make(chan struct{}, 1)
	shm     = map[[2]int]*os.File{}
)

// workerRun is runFunc: it unpacks the envelope, maps a large argument,
// runs the user's function with the call's deadline, and places a large
// result in the result memfd.
func workerRun(ctx context.Context, arg []byte) ([]byte, error) {
	e, err := decodeEnvelope(arg)
	if err != nil {
		return nil, err
	}
	if e.deadline != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, e.deadline))
		defer cancel()
	}
	select {
	case runSlot <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-runSlot }()

	in := e.inline
	if e.flags&flagArgShm != 0 && e.argLen > 0 {
		f, err := hostFile(e.hostPID, e.argFD, unix.O_RDONLY)
		if err != nil {
			return nil, err
		}
		// A private read-only mapping: no copy, and pages the function
		// never reads are never faulted in. MAP_POPULATE faults the rest
		// in one go rather than one page fault at a time.
		m, err := unix.Mmap(int(f.Fd()), 0, int(e.argLen), unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("process pool: mapping the %d-byte argument: %w", e.argLen, err)
		}
		// Unmapped once the result is out of the way: a result may be the
		// argument itself, or a slice of it.
		defer unix.Munmap(m)
		in = m
	}
	res, err := sdk.RunFunc(ctx, e.name, in)
	if err != nil {
		return nil, err
	}
	if e.resFD >= 0 && uint64(len(res)) >= uint64(e.threshold) {
		f, err := hostFile(e.hostPID, e.resFD, unix.O_RDWR)
		if err != nil {
			return nil, err
		}
		if _, err := f.WriteAt(res, 0); err != nil {
			return nil, fmt.Errorf("process pool: writing the %d-byte result to shared memory: %w", len(res), err)
		}
		out := make([]byte, resHeaderLen)
		out[0] = flagResShm
		le.PutUint64(out[8:], uint64(len(res)))
		return out, nil
	}
	out := make([]byte, resHeaderLen, resHeaderLen+len(res))
	return append(out, res...), nil
}

// workerIdle is idleFunc: it returns once no call holds the run slot.
func workerIdle(ctx context.Context, _ []byte) ([]byte, error) {
	select {
	case runSlot <- struct{}{}:
		<-runSlot
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// hostFile opens (once) the host's descriptor fd by its /proc path: a
// memfd has no other name, and the call plane carries no descriptors.
func hostFile(pid, fd, mode int) (*os.File, error) {
	k := [2]int{pid, fd}
	if f, ok := shm[k]; ok {
		return f, nil
	}
	path := "/proc/" + strconv.Itoa(pid) + "/fd/" + strconv.Itoa(fd)
	f, err := os.OpenFile(path, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("process pool: opening the host's shared memory: %w", err)
	}
	shm[k] = f
	return f, nil
}

// decodeResult splits a worker's answer into the inline result, or says
// how long the result in the memfd is.
func decodeResult(b []byte) (inline []byte, shmLen uint64, inShm bool, err error) {
	if len(b) < resHeaderLen || b[0]&^flagResShm != 0 {
		return nil, 0, false, fmt.Errorf("process pool: malformed result of %d bytes", len(b))
	}
	for _, r := range b[1:8] {
		if r != 0 {
			return nil, 0, false, errors.New("process pool: malformed result header")
		}
	}
	if b[0]&flagResShm != 0 {
		if len(b) != resHeaderLen {
			return nil, 0, false, errors.New("process pool: a result both inline and in shared memory")
		}
		return nil, le.Uint64(b[8:]), true, nil
	}
	return b[resHeaderLen:], 0, false, nil
}
