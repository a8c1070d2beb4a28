package kernel

import (
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// opResult is what a seam operation completed with.
type opResult struct {
	n    int
	fd   int // an accepted descriptor, or -1
	from sdk.SockAddr
	err  error
}

// sockWait is one sock_* call (or SockSendfile chunk) waiting on the I/O
// driver. The callbacks it hands the driver are method values made once,
// and waits are recycled through the loop, so a call that has to wait
// allocates only its future. A wait goes back to the free list once no
// callback of its operation can come any more: at once after a completion
// or a stopped read, after the late ErrCanceled completion of a cancelled
// write-side operation.
type sockWait struct {
	l       *Loop
	r       *ioRef
	buf     []byte    // ReadStart and RecvFromStart read into it
	bufs    [1][]byte // what Write writes
	to      sdk.SockAddr
	fut     *Future[struct{}]
	res     opResult
	pending bool // the operation may still call back
	// dir is the direction of the operation; opCancelled is set once it
	// was cancelled in the driver, so that it is cancelled only once (a
	// second Cancel would hit the operation that took its place).
	dir         sdk.Events
	opCancelled bool
	next        *sockWait

	allocFn  func(int) []byte
	readFn   func([]byte, error)
	recvFn   func([]byte, *sdk.SockAddr, error)
	acceptFn func(int, *sdk.SockAddr, error)
	nFn      func(int, error)
	errFn    func(error)
}

// getWait takes a wait from the loop's free list for an operation on r in
// direction dir, which the caller submits next. A sock_* call of a task that
// was cancelled while it waited, but has not resumed to withdraw its
// operation yet, gives way to it (asyncio: the second sock_recv replaces the
// reader of the first), instead of the new call failing with ErrFDBusy.
func (l *Loop) getWait(r *ioRef, dir sdk.Events, buf []byte) *sockWait {
	slot := &r.sockw[dirSlot(dir)]
	if old := *slot; old != nil && old.pending && old.fut != nil && old.fut.Done() {
		old.cancelOp()
	}
	w := l.net.waits
	if w != nil {
		l.net.waits, w.next = w.next, nil
	} else {
		w = &sockWait{l: l}
		w.allocFn, w.readFn, w.recvFn, w.acceptFn, w.nFn, w.errFn = w.alloc, w.read, w.recv, w.accept, w.doneN, w.doneErr
	}
	w.r, w.buf, w.res, w.pending, w.dir, w.opCancelled = r, buf, opResult{fd: -1}, true, dir, false
	return w
}

func dirSlot(dir sdk.Events) int {
	if dir == sdk.Read {
		return 0
	}
	return 1
}

func (w *sockWait) put() {
	if slot := &w.r.sockw[dirSlot(w.dir)]; *slot == w {
		*slot = nil
	}
	w.r, w.buf, w.bufs[0], w.fut, w.res = nil, nil, nil, nil, opResult{}
	w.next, w.l.net.waits = w.l.net.waits, w
}

// cancelOp cancels the pending operation in the driver, once. A read-side
// operation stops without a callback; a write-side one completes later with
// ErrCanceled, which recycles the wait (see complete).
func (w *sockWait) cancelOp() {
	if w.opCancelled || !w.pending {
		return
	}
	w.opCancelled = true
	w.r.f.Cancel(w.dir)
	if w.dir == sdk.Read {
		w.pending = false
	}
}

// wait suspends co until the operation that submitted (submitErr is what
// submitting it returned) completes, and returns its result. If co is
// cancelled first, the operation is cancelled in direction dir.
func (w *sockWait) wait(co *Co, dir sdk.Events, op string, submitErr error) (opResult, error) {
	if submitErr != nil {
		fd := w.r.fd
		w.put()
		return opResult{}, busyErr(op, fd, submitErr)
	}
	w.r.sockw[dirSlot(w.dir)] = w
	// The future is made only now, when there is something to wait for;
	// no completion can come before the task suspends, since callbacks
	// never run inside the call that submitted their operation.
	w.fut = CreateFuture[struct{}](w.l)
	_, err := w.fut.Await(co)
	if err != nil {
		if w.pending {
			w.cancelOp()
		} else if w.res.fd >= 0 && w.res.err == nil {
			unix.Close(w.res.fd) // accepted, but nobody is there to take it
		}
		if !w.pending {
			w.put()
		}
		return opResult{}, err
	}
	res := w.res
	w.put()
	return res, nil
}

// complete records the result for the waiting task; if the task has gone,
// the wait is recycled here.
func (w *sockWait) complete(res opResult) {
	w.res, w.pending = res, false
	if w.fut.Done() {
		if res.fd >= 0 && res.err == nil {
			unix.Close(res.fd)
		}
		w.put()
		return
	}
	w.fut.SetResult(struct{}{})
}

func (w *sockWait) alloc(int) []byte { return w.buf }

func (w *sockWait) read(data []byte, err error) {
	w.r.f.ReadStop()
	w.complete(opResult{n: copyIn(w.buf, data), fd: -1, err: err})
}

func (w *sockWait) recv(data []byte, from *sdk.SockAddr, err error) {
	w.r.f.ReadStop()
	res := opResult{n: copyIn(w.buf, data), fd: -1, err: err}
	if from != nil {
		res.from = *from
	}
	w.complete(res)
}

func (w *sockWait) accept(fd int, peer *sdk.SockAddr, err error) {
	w.r.f.AcceptStop()
	res := opResult{fd: fd, err: err}
	if peer != nil {
		res.from = *peer
	}
	w.complete(res)
}

func (w *sockWait) doneN(n int, err error) { w.complete(opResult{n: n, fd: -1, err: err}) }
func (w *sockWait) doneErr(err error)      { w.complete(opResult{fd: -1, err: err}) }
