package readiness

import (
	"io"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/rawsys"
	"github.com/loopkernel/loopkernel/sdk"
)

// readable runs the read-side operation of a descriptor the selector
// reported readable: one read (or one datagram) per event, so that one busy
// connection cannot starve the others; up to acceptMax connections for a
// listener.
func (f *file) readable() {
	f.queuedR = false
	if !f.open {
		f.d.tab.release(f)
		return
	}
	switch f.rop {
	case opRead:
		cb := f.readCB
		buf := f.alloc(-1)
		if f.rop != opRead || f.readCB == nil {
			return // stopped (or closed) inside alloc
		}
		if len(buf) == 0 {
			cb(nil, io.ErrShortBuffer)
			return
		}
		n, err := rawsys.Read(f.fd, buf)
		switch {
		case err == unix.EAGAIN:
		case err != nil:
			cb(nil, err)
		case n == 0:
			cb(nil, io.EOF)
		default:
			cb(buf[:n], nil)
		}
	case opRecvFrom:
		cb := f.recvCB
		buf := f.alloc(-1)
		if f.rop != opRecvFrom || f.recvCB == nil {
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
	case opAccept:
		// A callback that closes the listener may see its slot reused at
		// once; fd and gen tell the loop it is no longer serving the same
		// registration.
		cb, fd, gen := f.acceptCB, f.fd, f.gen
		for range f.acceptMax {
			nfd, err := accept(fd, &f.d.from)
			if err == unix.EAGAIN {
				return
			}
			if err != nil {
				cb(-1, nil, err)
				return
			}
			cb(nfd, &f.d.from, nil)
			if f.rop != opAccept || f.fd != fd || f.gen != gen {
				return // stopped or closed from the callback
			}
		}
	case opWatchRead:
		f.watchR()
	}
}

// writable runs the write-side operation of a descriptor the selector
// reported writable. A completion callback that submits the next operation
// keeps the descriptor armed (inWrite), so a write queue that drains in
// several rounds changes the registration only when it is empty.
func (f *file) writable() {
	f.queuedW = false
	if !f.open {
		f.d.tab.release(f)
		return
	}
	switch f.wop {
	case opWrite:
		n, err := f.write(f.wbufs)
		if err == unix.EAGAIN {
			return
		}
		f.finishN(n, err)
	case opSendTo:
		// Keep sending while the socket takes datagrams and the completion
		// submits the next one, as the kernel did before the seam: one
		// writable event drains as much of a queue as it can.
		defer f.endWrite()
		fd := f.fd
		for f.open && f.fd == fd && f.wop == opSendTo {
			err := rawsys.SendTo(f.fd, f.sendB, f.sendTo)
			if err == unix.EAGAIN {
				return
			}
			done := f.doneErr
			f.clearWrite()
			f.inWrite = true
			done(err)
			if err != nil {
				break
			}
		}
	case opConnect:
		var err error
		if f.connectRetry {
			switch err = connectRaw(f.fd, f.connSA); err {
			case unix.EAGAIN:
				return
			case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
				f.connectRetry = false
				return
			case unix.EISCONN:
				err = nil
			}
		} else {
			err = soError(f.fd)
		}
		done := f.doneErr
		f.connectRetry, f.connSA = false, nil
		f.clearWrite()
		f.inWrite = true
		defer f.endWrite()
		done(err)
	case opSendfile:
		n, err := rawsys.Sendfile(f.fd, f.sf.file, &f.sf.off, f.sf.count)
		if err == unix.EAGAIN {
			return
		}
		f.finishN(n, err)
	case opWatchWrite:
		f.watchW()
	}
}

// endWrite follows a write-side completion: the write interest is dropped
// unless the completion submitted another write-side operation. It is
// deferred so that a completion that panics cannot leave the descriptor
// believing it is inside one.
func (f *file) endWrite() {
	f.inWrite = false
	if f.open && f.wop == opNone {
		f.disarm(sdk.Write)
	}
}

// finishN ends the pending byte-counting write-side operation (Write,
// Sendfile) and runs its completion; a resubmission from inside it keeps
// the descriptor armed (endWrite decides once the completion returns).
func (f *file) finishN(n int, err error) {
	done := f.doneN
	f.clearWrite()
	f.inWrite = true
	defer f.endWrite()
	done(n, err)
}
