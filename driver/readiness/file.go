package readiness

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/rawsys"
	"github.com/loopkernel/loopkernel/sdk"
)

// sendfileOp is a pending Sendfile's arguments.
type sendfileOp struct {
	file  int
	off   int64
	count int
}

// op is what is armed on one side of a descriptor.
type op uint8

const (
	opNone op = iota
	// read side
	opRead
	opRecvFrom
	opAccept
	opWatchRead
	// write side
	opWrite
	opSendTo
	opConnect
	opSendfile
	opWatchWrite
)

// file is one open descriptor: its registration with the selector and the
// operation armed on each side. Its two dispatch callbacks (onR, onW) are
// method values made once per slot, so Poll hands them out without
// allocating.
type file struct {
	d    *Driver
	fd   int
	slot uint32
	gen  uint32

	open, freed      bool
	registered       bool
	interest         sdk.Events
	queuedR, queuedW bool // a dispatch callback is in the kernel's queue
	inWrite          bool // inside a write-side completion
	notSock          bool // send(2) said ENOTSOCK: a pipe or device, written with write(2)
	onR, onW         func()
	rop, wop         op
	connectRetry     bool // connect said EAGAIN (a full Unix backlog): try again when writable
	acceptMax        int32
	alloc            func(hint int) []byte
	readCB           func(data []byte, err error)
	recvCB           func(data []byte, from *sdk.SockAddr, err error)
	acceptCB         func(fd int, peer *sdk.SockAddr, err error)
	watchR, watchW   func()
	wbufs            [][]byte
	doneN            func(n int, err error) // Write, Sendfile
	sendB            []byte
	sendTo           *sdk.SockAddr
	doneErr          func(err error) // SendTo, Connect
	connSA           *sdk.SockAddr   // the address to retry a connect with
	sf               *sendfileOp     // the Sendfile pending, rare enough to live apart
}

func (f *file) reset(fd int) {
	d, slot, gen, onR, onW := f.d, f.slot, f.gen, f.onR, f.onW
	*f = file{d: d, slot: slot, gen: gen, onR: onR, onW: onW, fd: fd, open: true}
}

func (f *file) token() sdk.Token { return sdk.MakeToken(f.slot, f.gen) }

// arm adds ev to the interest, registering the descriptor (under a new
// generation) if it was not. Nothing changes, and no system call is made,
// when ev is already in the interest.
func (f *file) arm(ev sdk.Events) error {
	want := f.interest | ev
	if want == f.interest && f.registered {
		return nil
	}
	if !f.registered {
		f.gen++
		if err := f.d.sel.Register(f.fd, f.token(), want); err != nil {
			return fmt.Errorf("fd %d: register %v: %w", f.fd, want, err)
		}
		f.registered = true
	} else if err := f.d.sel.Modify(f.token(), want); err != nil {
		return fmt.Errorf("fd %d: modify %v: %w", f.fd, want, err)
	}
	f.interest = want
	return nil
}

// disarm removes ev from the interest; a descriptor with no interest left
// is unregistered, as the kernel did before the seam, so an idle
// connection costs the selector nothing.
func (f *file) disarm(ev sdk.Events) {
	want := f.interest &^ ev
	if want == f.interest || !f.registered {
		return
	}
	f.interest = want
	if want == 0 {
		f.registered = false
		f.d.sel.Unregister(f.token()) // best effort: the fd may be closed already
		return
	}
	f.d.sel.Modify(f.token(), want)
}

func (f *file) check(what string) error {
	if !f.open {
		return fmt.Errorf("%s: %w", what, sdk.ErrSelectorClosed)
	}
	return nil
}

func (f *file) busy(side op, what string) error {
	if err := f.check(what); err != nil {
		return err
	}
	if side != opNone {
		return fmt.Errorf("%s: fd %d: %w", what, f.fd, sdk.ErrBusy)
	}
	return nil
}

// startRead arms the read side for o; on failure it is left unarmed.
func (f *file) startRead(o op) error {
	f.rop = o
	if err := f.arm(sdk.Read); err != nil {
		f.clearRead()
		return err
	}
	return nil
}

func (f *file) startWrite(o op) error {
	f.wop = o
	if f.inWrite {
		return nil // resubmitted from its completion: still armed
	}
	if err := f.arm(sdk.Write); err != nil {
		f.clearWrite()
		return err
	}
	return nil
}

func (f *file) clearRead() {
	f.rop, f.alloc, f.readCB, f.recvCB, f.acceptCB, f.watchR = opNone, nil, nil, nil, nil, nil
}

func (f *file) clearWrite() {
	f.wop, f.wbufs, f.doneN, f.sendB, f.sendTo, f.doneErr, f.sf, f.watchW = opNone, nil, nil, nil, nil, nil, nil, nil
}

func (f *file) stopRead(o op) {
	if f.rop != o {
		return
	}
	f.clearRead()
	f.disarm(sdk.Read)
}

func (f *file) ReadStart(alloc func(int) []byte, cb func([]byte, error)) error {
	if err := f.busy(f.rop, "read start"); err != nil {
		return err
	}
	f.alloc, f.readCB = alloc, cb
	return f.startRead(opRead)
}

func (f *file) ReadStop() {
	if f.rop == opRead || f.rop == opRecvFrom {
		f.stopRead(f.rop)
	}
}

func (f *file) RecvFromStart(alloc func(int) []byte, cb func([]byte, *sdk.SockAddr, error)) error {
	if err := f.busy(f.rop, "recvfrom start"); err != nil {
		return err
	}
	f.alloc, f.recvCB = alloc, cb
	return f.startRead(opRecvFrom)
}

func (f *file) Accept(limit int, cb func(int, *sdk.SockAddr, error)) error {
	if err := f.busy(f.rop, "accept"); err != nil {
		return err
	}
	f.acceptMax, f.acceptCB = int32(max(limit, 1)), cb
	return f.startRead(opAccept)
}

func (f *file) AcceptStop() { f.stopRead(opAccept) }

func (f *file) TryRead(b []byte) (int, error) {
	if err := f.check("read"); err != nil {
		return 0, err
	}
	return rawsys.Read(f.fd, b)
}

func (f *file) TryWrite(bufs [][]byte) (int, error) {
	if err := f.check("write"); err != nil {
		return 0, err
	}
	return f.write(bufs)
}

// write writes bufs with send(2)/sendmsg(2), whose MSG_NOSIGNAL keeps a
// write to a closed socket from raising SIGPIPE; on a descriptor that is
// not a socket (a pipe, a FIFO, a terminal) the first ENOTSOCK switches it
// to write(2)/writev(2) for good. (A broken pipe there raises SIGPIPE,
// which the Go runtime ignores for descriptors other than 1 and 2: the
// write fails with EPIPE.)
func (f *file) write(bufs [][]byte) (int, error) {
	if !f.notSock {
		var n int
		var err error
		if len(bufs) == 1 {
			n, err = sendNoSignal(f.fd, bufs[0])
		} else {
			n, err = f.d.sendBufs(f.fd, bufs)
		}
		if err != unix.ENOTSOCK {
			return n, err
		}
		f.notSock = true
	}
	return f.d.writeBufs(f.fd, bufs)
}

func (f *file) Write(bufs [][]byte, done func(int, error)) error {
	if err := f.busy(f.wop, "write"); err != nil {
		return err
	}
	f.wbufs, f.doneN = bufs, done
	return f.startWrite(opWrite)
}

func (f *file) Shutdown(done func(error)) error {
	if err := f.check("shutdown"); err != nil {
		return err
	}
	err := unix.Shutdown(f.fd, unix.SHUT_WR)
	f.d.later(func() { done(err) })
	return nil
}

func (f *file) Connect(sa *sdk.SockAddr, done func(error)) error {
	if err := f.busy(f.wop, "connect"); err != nil {
		return err
	}
	err := connectRaw(f.fd, sa)
	switch err {
	case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
	case unix.EAGAIN:
		// A Unix listener's backlog is full: nothing is in progress, so
		// try again once the socket is writable.
		sa := *sa // the caller's may not outlive this call
		f.connectRetry, f.connSA = true, &sa
	default:
		f.d.later(func() { done(err) })
		return nil
	}
	f.doneErr = done
	return f.startWrite(opConnect)
}

func (f *file) TryRecvFrom(b []byte, from *sdk.SockAddr) (int, error) {
	if err := f.check("recvfrom"); err != nil {
		return 0, err
	}
	return rawsys.RecvFrom(f.fd, b, from)
}

func (f *file) TrySendTo(b []byte, to *sdk.SockAddr) error {
	if err := f.check("sendto"); err != nil {
		return err
	}
	return rawsys.SendTo(f.fd, b, to)
}

func (f *file) SendTo(b []byte, to *sdk.SockAddr, done func(error)) error {
	if err := f.busy(f.wop, "sendto"); err != nil {
		return err
	}
	f.sendB, f.sendTo, f.doneErr = b, to, done
	return f.startWrite(opSendTo)
}

func (f *file) Sendfile(file int, offset int64, count int, done func(int, error)) error {
	if err := f.busy(f.wop, "sendfile"); err != nil {
		return err
	}
	f.sf, f.doneN = &sendfileOp{file: file, off: offset, count: count}, done
	return f.startWrite(opSendfile)
}

func (f *file) Watch(ev sdk.Events, cb func()) error {
	if err := f.check("watch"); err != nil {
		return err
	}
	switch ev {
	case sdk.Read:
		if f.rop == opWatchRead {
			f.watchR = cb
			return nil
		}
		if err := f.busy(f.rop, "watch read"); err != nil {
			return err
		}
		f.watchR = cb
		return f.startRead(opWatchRead)
	case sdk.Write:
		if f.wop == opWatchWrite {
			f.watchW = cb
			return nil
		}
		if err := f.busy(f.wop, "watch write"); err != nil {
			return err
		}
		f.watchW = cb
		return f.startWrite(opWatchWrite)
	}
	return fmt.Errorf("watch %v: only read or write: %w", ev, unix.EINVAL)
}

func (f *file) Unwatch(ev sdk.Events) {
	switch {
	case ev == sdk.Read && f.rop == opWatchRead:
		f.stopRead(opWatchRead)
	case ev == sdk.Write && f.wop == opWatchWrite:
		f.clearWrite()
		f.disarm(sdk.Write)
	}
}

// Cancel implements sdk.FD.
func (f *file) Cancel(ev sdk.Events) {
	if !f.open {
		return
	}
	if ev&sdk.Read != 0 && f.rop != opNone {
		f.stopRead(f.rop)
	}
	if ev&sdk.Write != 0 && f.wop != opNone {
		f.cancelWrite()
		f.clearWrite()
		if !f.inWrite {
			f.disarm(sdk.Write)
		}
	}
}

// cancelWrite queues the cancellation of a pending one-shot write-side
// operation for the next batch.
func (f *file) cancelWrite() {
	d := f.d
	switch f.wop {
	case opWrite:
		done := f.doneN
		d.later(func() { done(0, sdk.ErrCanceled) })
	case opSendTo:
		done := f.doneErr
		d.later(func() { done(sdk.ErrCanceled) })
	case opConnect:
		done := f.doneErr
		d.later(func() { done(sdk.ErrCanceled) })
	case opSendfile:
		done := f.doneN
		d.later(func() { done(0, sdk.ErrCanceled) })
	}
}

// Close implements sdk.FD: a pending one-shot operation completes with
// sdk.ErrCanceled in the next batch; multishot ones just stop. The
// registration is removed now, so the kernel may close the descriptor as
// soon as Close returns.
func (f *file) Close() error {
	if !f.open {
		return nil
	}
	d := f.d
	f.cancelWrite()
	var err error
	if f.registered {
		if uerr := d.sel.Unregister(f.token()); uerr != nil {
			err = fmt.Errorf("close fd %d: %w", f.fd, uerr)
		}
	}
	f.detach()
	return err
}

// detach forgets the descriptor and frees the slot once no callback of it
// is queued.
func (f *file) detach() {
	if !f.open {
		return
	}
	f.clearRead()
	f.clearWrite()
	f.open, f.registered, f.interest = false, false, 0
	f.d.tab.byFD.del(f.fd)
	f.fd = -1
	f.d.tab.release(f)
}

var _ sdk.FD = (*file)(nil)
