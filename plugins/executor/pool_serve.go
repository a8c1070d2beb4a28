package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// The worker's side of the pool: what a worker process does with the calls
// that reach it on its channel. One goroutine reads a call, runs it and
// writes the answer, with blocking system calls, so a call changes goroutine
// nowhere in the worker.

// workerChannel is this worker's channel once setup has connected it; the
// goroutine serving it is its only user.
var workerChannel *channel

// current is the call the worker runs, for workerCancel, which arrives on
// the call plane while the channel's goroutine runs the function.
var current struct {
	sync.Mutex
	seq    uint32
	cancel context.CancelFunc // nil between calls
	// cancelled is a call whose cancel arrived before the call did (the
	// host sent both, and the call plane was faster): it starts cancelled.
	cancelled    uint32
	hasCancelled bool
}

// workerSetup is the first call a pool makes to a new worker: the argument
// is "PROCS CHANNEL", the worker's GOMAXPROCS in decimal (0: leave it) and
// the abstract socket name of the host's listener for its channel. It
// returns once the channel is connected, and serves it from then on.
func workerSetup(_ context.Context, arg []byte) ([]byte, error) {
	procs, name, ok := strings.Cut(string(arg), " ")
	n, err := strconv.Atoi(procs)
	if !ok || err != nil || n < 0 || name == "" || workerChannel != nil {
		return nil, fmt.Errorf("process pool: setup %q: %w", arg, errEnvelope)
	}
	if n > 0 {
		runtime.GOMAXPROCS(n)
	}
	fd, err := dialChannel(name)
	if err != nil {
		return nil, err
	}
	workerChannel = newChannel(fd, -1, -1)
	go serveChannel(workerChannel)
	return nil, nil
}

// workerCancel cancels the call whose sequence number is its argument
// (4 bytes, little-endian): the host's caller gave it up.
func workerCancel(_ context.Context, arg []byte) ([]byte, error) {
	if len(arg) != 4 {
		return nil, fmt.Errorf("process pool: cancel %x: %w", arg, errEnvelope)
	}
	seq := le.Uint32(arg)
	current.Lock()
	defer current.Unlock()
	if current.cancel != nil && current.seq == seq {
		current.cancel()
	} else {
		current.cancelled, current.hasCancelled = seq, true
	}
	return nil, nil
}

// serveChannel runs the calls that arrive on c until the host closes it.
// A call the worker cannot read means the host is another program or a bug:
// the worker says so and exits, which the host reports as the worker's
// death with that exit status.
func serveChannel(c *channel) {
	var out []byte
	for {
		err := c.readMessage(kindCall)
		if errors.Is(err, errPeerGone) {
			return // the host closed the channel: it is stopping this worker
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "process pool worker %d: %v\n", os.Getpid(), err)
			os.Exit(exitBadCall)
		}
		if cap(out) > retainShm {
			out = nil
		}
		out = runCall(c.asm.seq, c.asm.msg, out[:0])
		if err := c.send(kindAnswer, c.asm.seq, out); err != nil {
			if errors.Is(err, errPeerGone) {
				return
			}
			fmt.Fprintf(os.Stderr, "process pool worker %d: %v\n", os.Getpid(), err)
			os.Exit(exitBadCall)
		}
	}
}

// exitBadCall is a worker's exit status when its channel broke the rules
// (EX_SOFTWARE).
const exitBadCall = 70

// runCall runs the call in msg and appends its answer to out: it unpacks
// the envelope, maps a large argument, runs the user's function with the
// call's deadline and its cancellation, and places a large result in the
// result memfd.
func runCall(seq uint32, msg, out []byte) []byte {
	fail := func(status uint8, err error) []byte {
		return append(appendAnswer(out, 0, status, 0), err.Error()...)
	}
	e, err := decodeEnvelope(msg)
	if err != nil {
		return fail(statusError, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if e.deadline != 0 {
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, e.deadline))
		defer cancel()
	}
	current.Lock()
	current.seq, current.cancel = seq, cancel
	if current.hasCancelled && current.cancelled == seq {
		cancel()
	}
	current.hasCancelled = false
	current.Unlock()
	defer func() {
		current.Lock()
		current.cancel = nil
		current.Unlock()
	}()

	in := e.inline
	if e.flags&flagArgShm != 0 && e.argLen > 0 {
		f, err := hostFile(e.hostPID, e.argFD, unix.O_RDONLY)
		if err != nil {
			return fail(statusError, err)
		}
		// A private read-only mapping: no copy, and pages the function
		// never reads are never faulted in. MAP_POPULATE faults the rest
		// in one go rather than one page fault at a time.
		m, err := unix.Mmap(int(f.Fd()), 0, int(e.argLen), unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_POPULATE)
		if err != nil {
			return fail(statusError, fmt.Errorf("process pool: mapping the %d-byte argument: %w", e.argLen, err))
		}
		// Unmapped once the result is out of the way: a result may be the
		// argument itself, or a slice of it.
		defer unix.Munmap(m)
		in = m
	}
	res, err := sdk.RunFunc(ctx, e.name, in)
	var ce *sdk.CallError
	switch {
	case errors.Is(err, sdk.ErrUnknownFunc):
		return fail(statusUnknown, err)
	case errors.As(err, &ce):
		return append(appendAnswer(out, 0, statusFailed, 0), ce.Message...)
	case err != nil:
		return fail(statusError, err)
	}
	if e.resFD >= 0 && uint64(len(res)) >= uint64(e.threshold) {
		f, err := hostFile(e.hostPID, e.resFD, unix.O_RDWR)
		if err != nil {
			return fail(statusError, err)
		}
		if _, err := f.WriteAt(res, 0); err != nil {
			return fail(statusError, fmt.Errorf("process pool: writing the %d-byte result to shared memory: %w", len(res), err))
		}
		return appendAnswer(out, flagResShm, statusOK, uint64(len(res)))
	}
	if len(res)+resHeaderLen > maxMessage {
		return fail(statusError, fmt.Errorf("process pool: a %d-byte result is over the worker channel's %d-byte limit (shared memory is off)", len(res), maxMessage))
	}
	return append(appendAnswer(out, 0, statusOK, 0), res...)
}

// shm caches the host's memfds, opened once by /proc path; only the
// channel's goroutine touches it.
var shm = map[[2]int]*os.File{}

// hostFile opens (once) the host's descriptor fd by its /proc path: a
// memfd has no other name, and no descriptor is passed to a worker.
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
