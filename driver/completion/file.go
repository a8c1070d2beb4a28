package completion

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/rawsys"
	"github.com/loopkernel/loopkernel/sdk"
)

// kind is the sort of operation a submission carries, in its user data.
type kind uint8

const (
	kNone kind = iota
	kRecv
	kAccept
	kPollR
	kSend
	kConnect
	kPollW
	kShutdown
	nKinds
)

// op is what is armed on one side of a descriptor.
type op uint8

const (
	opNone op = iota
	opRead
	opRecvFrom
	opAccept
	opWatchRead
	opWrite
	opSendTo
	opConnect
	opSendfile
	opWatchWrite
)

// opState is the current operation of one kind: its sequence number (in
// the user data) and whether it is in flight and not yet cancelled.
type opState struct {
	seq   uint32
	armed bool
}

// orphan is a one-shot write-side operation cancelled (Cancel or Close)
// while in flight: its completion still comes, and its callback runs then.
type orphan struct {
	ud      uint64
	doneN   func(int, error)
	doneErr func(error)
}

// file is one open descriptor.
type file struct {
	d    *Driver
	fd   int
	slot uint32

	open, freed bool
	queued      bool // run is in the kernel's queue
	run         func()
	evq         []sdk.Completion
	inflight    int    // submissions whose final completion has not come
	lastIter    uint64 // the Poll during which it last submitted
	ops         [nKinds]opState
	live        [nKinds]uint16 // in flight per kind, cancelled ones included
	orphans     []orphan

	rop, wop       op
	alloc          func(hint int) []byte
	readCB         func(data []byte, err error)
	recvCB         func(data []byte, from *sdk.SockAddr, err error)
	acceptCB       func(fd int, peer *sdk.SockAddr, err error)
	watchR, watchW func()
	wbufs          [][]byte
	doneN          func(n int, err error)
	doneErr        func(err error)
	sendB          []byte
	sendTo         *sdk.SockAddr
	sf             sendfileOp
	connSA         sdk.SockAddr // a copy, to submit a connect again
	shutDone       func(err error)

	// What a read completed after it was stopped: delivered first when
	// reading starts again (or to TryRead), so no byte is lost.
	stash    []byte
	stashEOF bool
	eof      bool // end of stream seen: the read is not re-armed
	accepted []int
}

type sendfileOp struct {
	file  int
	off   int64
	count int
}

func (f *file) reset(fd int) {
	d, slot, run, evq, ops, stash := f.d, f.slot, f.run, f.evq[:0], f.ops, f.stash[:0]
	for i := range ops {
		ops[i].armed = false
	}
	*f = file{d: d, slot: slot, run: run, evq: evq, ops: ops, stash: stash, fd: fd, open: true}
	// live is all zero: a slot is reused only when nothing is in flight.
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

// start submits an operation of kind k as the current one.
func (f *file) start(k kind, s sdk.Submission) error {
	st := &f.ops[k]
	st.seq = (st.seq + 1) & 0xffffff
	s.UserData, s.FD = encode(f.slot, k, st.seq), int32(f.fd)
	if err := f.d.submit(s); err != nil {
		return fmt.Errorf("fd %d: %w", f.fd, err)
	}
	st.armed = true
	f.inflight++
	f.live[k]++
	f.lastIter = f.d.iter
	return nil
}

// cancel cancels the current operation of kind k, if in flight; its
// completion, when it comes, is no longer current.
func (f *file) cancel(k kind) uint64 {
	st := &f.ops[k]
	if !st.armed {
		return 0
	}
	st.armed = false
	ud := encode(f.slot, k, st.seq)
	f.d.submit(sdk.Submission{Op: sdk.OpCancel, Aux: ud}) // fails only on a closed back-end
	return ud
}

// armRecv submits a read into a provided buffer. The first read of a
// ReadStart is one-shot: a reader that stops after one completion (a
// sock_recv) then leaves nothing in flight that could take bytes after it
// let go of the descriptor. A reader still reading after a completion (a
// transport) gets a multishot read, which completes for every arrival of
// bytes until stopped.
func (f *file) armRecv(multishot bool) error {
	flags := sdk.SubProvidedBuffer
	if multishot {
		flags |= sdk.SubMultishot
	}
	return f.start(kRecv, sdk.Submission{Op: sdk.OpRead, Flags: flags, Group: bufGroup})
}

func (f *file) armPoll(k kind, ev sdk.Events) error {
	return f.start(k, sdk.Submission{Op: sdk.OpPoll, Events: ev})
}

func (f *file) clearRead() {
	f.rop, f.alloc, f.readCB, f.recvCB, f.acceptCB, f.watchR = opNone, nil, nil, nil, nil, nil
}

func (f *file) clearWrite() {
	f.wop, f.wbufs, f.doneN, f.sendB, f.sendTo, f.doneErr, f.watchW = opNone, nil, nil, nil, nil, nil, nil
	f.sf = sendfileOp{}
}

// stopRead ends the read-side operation without a callback. A stream
// read stays armed in the back-end, its bytes stashed, until the stash
// passes stashLimit: a pause followed by a resume (flow control, one
// sock_recv after another) then costs no cancellation and no new
// submission, and bytes can never overtake each other.
func (f *file) stopRead() {
	switch f.rop {
	case opRead:
	case opAccept:
		f.cancel(kAccept)
	case opRecvFrom, opWatchRead:
		f.cancel(kPollR)
	}
	f.clearRead()
}

func (f *file) ReadStart(alloc func(int) []byte, cb func([]byte, error)) error {
	if err := f.busy(f.rop, "read start"); err != nil {
		return err
	}
	f.rop, f.alloc, f.readCB = opRead, alloc, cb
	if len(f.stash) > 0 || f.stashEOF {
		f.d.later(f.flushStash) // the stash's bytes come first, in the next batch
	}
	if f.eof || f.live[kRecv] > 0 {
		return nil // armed still, or re-armed when the cancelled one ends
	}
	if err := f.armRecv(false); err != nil {
		f.clearRead()
		return err
	}
	return nil
}

func (f *file) ReadStop() {
	if f.rop == opRead || f.rop == opRecvFrom {
		f.stopRead()
	}
}

func (f *file) RecvFromStart(alloc func(int) []byte, cb func([]byte, *sdk.SockAddr, error)) error {
	if err := f.busy(f.rop, "recvfrom start"); err != nil {
		return err
	}
	f.rop, f.alloc, f.recvCB = opRecvFrom, alloc, cb
	if err := f.armPoll(kPollR, sdk.Read); err != nil {
		f.clearRead()
		return err
	}
	return nil
}

func (f *file) Accept(_ int, cb func(int, *sdk.SockAddr, error)) error {
	if err := f.busy(f.rop, "accept"); err != nil {
		return err
	}
	f.rop, f.acceptCB = opAccept, cb
	if len(f.accepted) > 0 {
		f.d.later(f.flushAccepted)
	}
	if f.ops[kAccept].armed {
		return nil
	}
	if err := f.start(kAccept, sdk.Submission{Op: sdk.OpAccept, Flags: sdk.SubMultishot}); err != nil {
		f.clearRead()
		return err
	}
	return nil
}

func (f *file) AcceptStop() {
	if f.rop == opAccept {
		f.stopRead()
	}
}

func (f *file) TryRead(b []byte) (int, error) {
	if err := f.check("read"); err != nil {
		return 0, err
	}
	if len(f.stash) > 0 {
		n := copy(b, f.stash)
		f.stash = f.stash[:copy(f.stash, f.stash[n:])]
		return n, nil
	}
	if f.stashEOF {
		return 0, nil
	}
	if f.live[kRecv] > 0 {
		// A read is in the back-end: reading beside it would let bytes
		// overtake the ones it took.
		return 0, sdk.ErrWouldBlock
	}
	return rawsys.Read(f.fd, b)
}

// TryWrite implements sdk.FD by declining: the write then goes through
// Write and so into the loop's one submission per iteration, instead of a
// system call of its own.
func (f *file) TryWrite([][]byte) (int, error) {
	if err := f.check("write"); err != nil {
		return 0, err
	}
	return 0, sdk.ErrWouldBlock
}

func (f *file) Write(bufs [][]byte, done func(int, error)) error {
	if err := f.busy(f.wop, "write"); err != nil {
		return err
	}
	f.wop, f.wbufs, f.doneN = opWrite, bufs, done
	if err := f.start(kSend, sdk.Submission{Op: sdk.OpWrite, Bufs: bufs}); err != nil {
		f.clearWrite()
		return err
	}
	return nil
}

func (f *file) Shutdown(done func(error)) error {
	if err := f.check("shutdown"); err != nil {
		return err
	}
	if f.shutDone != nil {
		return fmt.Errorf("shutdown: fd %d: %w", f.fd, sdk.ErrBusy)
	}
	f.shutDone = done
	if err := f.start(kShutdown, sdk.Submission{Op: sdk.OpShutdown}); err != nil {
		f.shutDone = nil
		return err
	}
	return nil
}

func (f *file) Connect(sa *sdk.SockAddr, done func(error)) error {
	if err := f.busy(f.wop, "connect"); err != nil {
		return err
	}
	f.wop, f.doneErr, f.connSA = opConnect, done, *sa
	if err := f.start(kConnect, sdk.Submission{Op: sdk.OpConnect, Addr: &f.connSA}); err != nil {
		f.clearWrite()
		return err
	}
	return nil
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
	f.wop, f.sendB, f.sendTo, f.doneErr = opSendTo, b, to, done
	if err := f.armPoll(kPollW, sdk.Write); err != nil {
		f.clearWrite()
		return err
	}
	return nil
}

func (f *file) Sendfile(file int, offset int64, count int, done func(int, error)) error {
	if err := f.busy(f.wop, "sendfile"); err != nil {
		return err
	}
	f.wop, f.sf, f.doneN = opSendfile, sendfileOp{file: file, off: offset, count: count}, done
	if err := f.armPoll(kPollW, sdk.Write); err != nil {
		f.clearWrite()
		return err
	}
	return nil
}

func (f *file) Watch(ev sdk.Events, cb func()) error {
	if err := f.check("watch"); err != nil {
		return err
	}
	// A poll of a closed descriptor would fail only in its completion;
	// AddReader and AddWriter promise the error now (as epoll_ctl gives
	// it), so ask the kernel once: watching is not a per-event path.
	if _, err := unix.FcntlInt(uintptr(f.fd), unix.F_GETFD, 0); err != nil {
		return fmt.Errorf("watch fd %d: %w", f.fd, err)
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
		f.rop, f.watchR = opWatchRead, cb
		if err := f.armPoll(kPollR, sdk.Read); err != nil {
			f.clearRead()
			return err
		}
		return nil
	case sdk.Write:
		if f.wop == opWatchWrite {
			f.watchW = cb
			return nil
		}
		if err := f.busy(f.wop, "watch write"); err != nil {
			return err
		}
		f.wop, f.watchW = opWatchWrite, cb
		if err := f.armPoll(kPollW, sdk.Write); err != nil {
			f.clearWrite()
			return err
		}
		return nil
	}
	return fmt.Errorf("watch %v: only read or write: %w", ev, unix.EINVAL)
}

func (f *file) Unwatch(ev sdk.Events) {
	switch {
	case ev == sdk.Read && f.rop == opWatchRead:
		f.stopRead()
	case ev == sdk.Write && f.wop == opWatchWrite:
		f.cancel(kPollW)
		f.clearWrite()
	}
}

// Cancel implements sdk.FD: the read side stops without a callback; a
// write-side one-shot operation is cancelled and completes with
// sdk.ErrCanceled (or its result, if it won the race).
func (f *file) Cancel(ev sdk.Events) {
	if !f.open {
		return
	}
	if ev&sdk.Read != 0 && f.rop != opNone {
		f.stopRead()
	}
	if ev&sdk.Write != 0 && f.wop != opNone {
		f.cancelWrite()
	}
}

// cancelWrite cancels the write side's operation. Write and Connect are in
// the back-end: their completion (ECANCELED, or the result if it won)
// reaches the callback through the orphan list. SendTo and Sendfile wait
// on a poll: they complete with ErrCanceled in the next batch.
func (f *file) cancelWrite() {
	d := f.d
	switch f.wop {
	case opWrite:
		if ud := f.cancel(kSend); ud != 0 {
			f.orphans = append(f.orphans, orphan{ud: ud, doneN: f.doneN})
		}
	case opConnect:
		if ud := f.cancel(kConnect); ud != 0 {
			f.orphans = append(f.orphans, orphan{ud: ud, doneErr: f.doneErr})
		}
	case opSendTo:
		f.cancel(kPollW)
		done := f.doneErr
		d.later(func() { done(errCanceled) })
	case opSendfile:
		f.cancel(kPollW)
		done := f.doneN
		d.later(func() { done(0, errCanceled) })
	case opWatchWrite:
		f.cancel(kPollW)
	}
	f.clearWrite()
}

// Close implements sdk.FD: everything pending is cancelled (one-shot
// operations still call back, later), and if this descriptor has
// submissions the back-end has not yet taken, they are submitted now, so
// that no system call names the descriptor after Close returns.
func (f *file) Close() error {
	if !f.open {
		return nil
	}
	f.stopRead()
	f.cancelWrite()
	for k := range f.ops {
		if kind(k) != kShutdown { // a shutdown completes quickly and reports anyway
			f.cancel(kind(k))
		}
	}
	f.d.keepResidue(f)
	var err error
	if f.lastIter == f.d.iter && !f.d.closed {
		if _, err = f.d.p.Complete(nil, 0); err != nil {
			err = fmt.Errorf("close fd %d: submit: %w", f.fd, err)
		}
	}
	f.detach()
	return err
}

// detach forgets the descriptor: connections accepted after a stop are
// closed, stashed bytes dropped.
func (f *file) detach() {
	for _, nfd := range f.accepted {
		unix.Close(nfd)
	}
	f.accepted = f.accepted[:0]
	f.stash, f.stashEOF = f.stash[:0], false
	f.clearRead()
	f.clearWrite()
	f.open = false
	delete(f.d.tab.byFD, f.fd)
	f.fd = -1
	f.d.tab.release(f)
}

var _ sdk.FD = (*file)(nil)
