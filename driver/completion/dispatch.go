package completion

import (
	"errors"
	"fmt"
	"io"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/rawsys"
	"github.com/loopkernel/loopkernel/sdk"
)

// errCanceled is what a cancelled operation completes with: it matches
// both sdk.ErrCanceled and ECANCELED. Made once, so cancelling allocates
// nothing.
var errCanceled = fmt.Errorf("%w: %w", sdk.ErrCanceled, unix.ECANCELED)

// resErr turns a negative completion result into the error of the seam.
func resErr(res int32) error {
	if e := syscall.Errno(-res); e == unix.ECANCELED {
		return errCanceled
	} else {
		return e
	}
}

// dispatch runs the completions Poll queued for this descriptor, in the
// order they came. It is the descriptor's one callback in the kernel's
// batch (a method value made once per slot).
func (f *file) dispatch() {
	f.queued = false
	for i := 0; i < len(f.evq); i++ {
		f.complete(f.evq[i])
	}
	clear(f.evq)
	f.evq = f.evq[:0]
	if !f.open {
		f.d.tab.release(f)
	}
}

// complete handles one completion. A completion is current when its
// sequence number is that of the operation of its kind now armed; others
// belong to operations stopped or cancelled, whose buffers and accepted
// descriptors are still taken care of.
func (f *file) complete(c sdk.Completion) {
	_, k, seq := decode(c.UserData)
	st := &f.ops[k]
	current := st.armed && st.seq == seq
	if !c.More {
		f.live[k]--
		if current {
			st.armed = false
		}
	}
	switch k {
	case kRecv:
		f.recvDone(c, current)
	case kAccept:
		f.acceptDone(c, current)
	case kPollR:
		if current {
			f.pollR(c)
		}
	case kPollW:
		if current {
			f.pollW(c)
		}
	case kSend, kConnect:
		f.oneShotDone(c, k, current)
	case kShutdown:
		if done := f.shutDone; done != nil {
			f.shutDone = nil
			var err error
			if c.Res < 0 {
				err = resErr(c.Res)
			}
			done(err)
		}
	}
}

// recvDone delivers a read completion: its bytes (into the caller's alloc
// buffers, or the stash if reading stopped), end of stream or an error,
// and re-arms the read when the back-end ended it (buffers ran out, an
// error) while reading goes on.
func (f *file) recvDone(c sdk.Completion, current bool) {
	switch {
	case c.HasBuffer && c.Res > 0:
		f.deliver(f.d.bufs[c.Buffer][:c.Res])
		f.d.giveBack(c.Buffer)
		if len(f.stash) > stashLimit && f.rop != opRead {
			f.cancel(kRecv) // paused for long enough: stop taking bytes
		}
	case c.Res == 0:
		if c.HasBuffer {
			f.d.giveBack(c.Buffer)
		}
		f.eof = true
		if f.rop == opRead && len(f.stash) == 0 {
			f.readCB(nil, io.EOF)
		} else if f.open {
			f.stashEOF = true
		}
	case c.Res < 0:
		switch e := syscall.Errno(-c.Res); e {
		case unix.ECANCELED, unix.ENOBUFS, unix.EAGAIN: // re-armed below
		default:
			if f.rop == opRead && current {
				f.readCB(nil, e)
			}
		}
	}
	if !c.More && f.rop == opRead && f.open && !f.eof && f.live[kRecv] == 0 {
		if err := f.armRecv(true); err != nil && f.rop == opRead {
			f.readCB(nil, err)
		}
	}
}

// stashLimit is how many bytes a stopped read takes before it is
// cancelled.
const stashLimit = 1 << 40

// deliver hands data to the reader, a buffer from alloc at a time; what
// is left when reading stops is stashed for the next ReadStart.
func (f *file) deliver(data []byte) {
	if len(f.stash) > 0 || f.stashEOF {
		f.stash = append(f.stash, data...)
		f.flushStash()
		return
	}
	rest := f.feed(data)
	if len(rest) > 0 && f.open {
		f.stash = append(f.stash, rest...)
	}
}

// feed copies data into the reader's buffers while it reads and returns
// what it did not take.
func (f *file) feed(data []byte) []byte {
	for len(data) > 0 && f.rop == opRead {
		cb := f.readCB
		buf := f.alloc(len(data))
		if f.rop != opRead || len(buf) == 0 {
			break // stopped in alloc, or no room: kept for later
		}
		n := copy(buf, data)
		data = data[n:]
		cb(buf[:n], nil)
	}
	return data
}

// flushStash delivers what was stashed, then a stashed end of stream.
func (f *file) flushStash() {
	if f.rop != opRead {
		return
	}
	rest := f.feed(f.stash)
	f.stash = f.stash[:copy(f.stash, rest)]
	if len(f.stash) == 0 && f.stashEOF && f.rop == opRead {
		f.stashEOF = false
		f.readCB(nil, io.EOF)
	}
}

// acceptDone hands an accepted connection to the acceptor, or keeps it for
// the next Accept if accepting stopped meanwhile (a pause on EMFILE must
// not drop a client), or closes it if the listener is gone.
func (f *file) acceptDone(c sdk.Completion, current bool) {
	if c.Res >= 0 {
		nfd := int(c.Res)
		switch {
		case f.rop == opAccept:
			peer(nfd, &f.d.from)
			f.acceptCB(nfd, &f.d.from, nil)
		case f.open:
			f.accepted = append(f.accepted, nfd)
		default:
			unix.Close(nfd)
		}
	} else if e := syscall.Errno(-c.Res); e != unix.ECANCELED && e != unix.EAGAIN && current && f.rop == opAccept {
		f.acceptCB(-1, nil, e)
	}
	if !c.More && current && f.rop == opAccept && f.open && !f.ops[kAccept].armed {
		if err := f.start(kAccept, sdk.Submission{Op: sdk.OpAccept, Flags: sdk.SubMultishot}); err != nil && f.rop == opAccept {
			f.acceptCB(-1, nil, err)
		}
	}
}

// flushAccepted hands over connections accepted while accepting was
// stopped.
func (f *file) flushAccepted() {
	for len(f.accepted) > 0 && f.rop == opAccept {
		nfd := f.accepted[0]
		f.accepted = f.accepted[:copy(f.accepted, f.accepted[1:])]
		peer(nfd, &f.d.from)
		f.acceptCB(nfd, &f.d.from, nil)
	}
}

// pollR runs the read side on a readiness completion: a watcher's
// callback, or one datagram; then polls again while the operation lasts.
func (f *file) pollR(c sdk.Completion) {
	if c.Res < 0 && syscall.Errno(-c.Res) == unix.ECANCELED {
		return
	}
	switch f.rop {
	case opWatchRead:
		f.watchR()
	case opRecvFrom:
		cb := f.recvCB
		buf := f.alloc(-1)
		if f.rop != opRecvFrom {
			return
		}
		n, err := rawsys.RecvFrom(f.fd, buf, &f.d.from)
		switch {
		case err == unix.EAGAIN:
		case err != nil:
			cb(nil, nil, err)
		default:
			cb(buf[:n], &f.d.from, nil)
		}
	default:
		return
	}
	if f.open && (f.rop == opWatchRead || f.rop == opRecvFrom) && !f.ops[kPollR].armed {
		if err := f.armPoll(kPollR, sdk.Read); err != nil {
			f.failRead(err)
		}
	}
}

// failRead reports a failure to re-arm the read side to its operation.
func (f *file) failRead(err error) {
	switch f.rop {
	case opRead:
		f.readCB(nil, err)
	case opRecvFrom:
		f.recvCB(nil, nil, err)
	}
}

// pollW runs the write side on a readiness completion.
func (f *file) pollW(c sdk.Completion) {
	if c.Res < 0 && syscall.Errno(-c.Res) == unix.ECANCELED {
		return
	}
	switch f.wop {
	case opWatchWrite:
		f.watchW()
		if f.open && f.wop == opWatchWrite && !f.ops[kPollW].armed {
			f.armPoll(kPollW, sdk.Write) // a failure leaves the watch silent, as a closed descriptor would
		}
		return
	case opSendTo:
		err := rawsys.SendTo(f.fd, f.sendB, f.sendTo)
		if err == unix.EAGAIN {
			break
		}
		done := f.doneErr
		f.clearWrite()
		done(err)
		return
	case opSendfile:
		n, err := rawsys.Sendfile(f.fd, f.sf.file, &f.sf.off, f.sf.count)
		if err == unix.EAGAIN {
			break
		}
		done := f.doneN
		f.clearWrite()
		done(n, err)
		return
	default:
		return
	}
	if err := f.armPoll(kPollW, sdk.Write); err != nil {
		f.finishWrite(0, err)
	}
}

// finishWrite ends the write side's operation with err.
func (f *file) finishWrite(n int, err error) {
	doneN, doneErr := f.doneN, f.doneErr
	f.clearWrite()
	switch {
	case doneN != nil:
		doneN(n, err)
	case doneErr != nil:
		doneErr(err)
	}
}

// oneShotDone completes a Write or Connect: the current one through the
// write side, a cancelled one through its orphan record.
//
// io_uring may complete a send or connect on a non-blocking socket with
// EAGAIN (when it gives up polling and punts the operation to a worker,
// which honours O_NONBLOCK): that is no result, and the operation is
// submitted again.
func (f *file) oneShotDone(c sdk.Completion, k kind, current bool) {
	if c.Res == -int32(unix.EAGAIN) && current && f.open &&
		(k == kSend && f.wop == opWrite || k == kConnect && f.wop == opConnect) {
		var err error
		if k == kSend {
			err = f.start(kSend, sdk.Submission{Op: sdk.OpWrite, Bufs: f.wbufs})
		} else {
			err = f.start(kConnect, sdk.Submission{Op: sdk.OpConnect, Addr: &f.connSA})
		}
		if err != nil {
			f.finishWrite(0, err) // the resubmission's failure is the result
		}
		return
	}
	n, err := int(max(c.Res, 0)), error(nil)
	if c.Res < 0 {
		err = resErr(c.Res)
	}
	if k == kConnect && err == nil {
		n = 0
	}
	if current && (f.wop == opWrite && k == kSend || f.wop == opConnect && k == kConnect) {
		f.finishWrite(n, err)
		return
	}
	for i, o := range f.orphans {
		if o.ud != c.UserData {
			continue
		}
		f.orphans = append(f.orphans[:i], f.orphans[i+1:]...)
		if o.doneN != nil {
			if errors.Is(err, sdk.ErrCanceled) {
				n = 0
			}
			o.doneN(n, err)
		} else if o.doneErr != nil {
			o.doneErr(err)
		}
		return
	}
}
