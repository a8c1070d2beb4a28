package proactorplane

import (
	"syscall"

	"github.com/loopkernel/loopkernel/sdk"
)

// DiedErrno is the errno a result carries when its operation was in flight
// in a plugin that died (Client.Abandon): EOWNERDEAD, "owner died", which
// no socket operation returns on its own. Driver turns it into the
// supervisor's error, which wraps sdk.ErrBackendDied and says so.
const DiedErrno = syscall.EOWNERDEAD

// Driver is an I/O driver (the completion driver, over a Client) with the
// two things an out-of-process proactor adds: closing a descriptor also
// drops the plugin's copy of it (Forget), or the peer would not see the
// socket close until the plugin let go; and an operation that failed
// because the plugin died reports the supervisor's error, which wraps
// sdk.ErrBackendDied, instead of a bare errno. Each descriptor's callbacks
// are wrapped by method values made once per descriptor and kind of
// operation, at its first use, so the wrapping allocates nothing per
// operation.
type Driver struct {
	sdk.Driver
	forget func(fd int)
	died   func() error
	caps   sdk.DriverCapabilities
}

// WrapDriver wraps inner. forget is called once a descriptor's Close
// returned (its cancellations are written); died returns the error for
// an operation the plugin's death ended.
func WrapDriver(inner sdk.Driver, backend string, forget func(fd int), died func() error) *Driver {
	caps := inner.Capabilities()
	caps.Backend = backend
	return &Driver{Driver: inner, forget: forget, died: died, caps: caps}
}

// Capabilities implements sdk.Driver: the inner driver's, with the
// plugin's back-end name.
func (d *Driver) Capabilities() sdk.DriverCapabilities { return d.caps }

// Open implements sdk.Driver.
func (d *Driver) Open(fd int) (sdk.FD, error) {
	in, err := d.Driver.Open(fd)
	if err != nil {
		return nil, err
	}
	return &fdWrap{FD: in, d: d, fd: fd}, nil
}

// err translates a died errno.
func (d *Driver) err(err error) error {
	if err == DiedErrno {
		return d.died()
	}
	return err
}

// fdWrap is one open descriptor.
type fdWrap struct {
	sdk.FD
	d      *Driver
	fd     int
	closed bool

	readCB                   func([]byte, error)
	recvCB                   func([]byte, *sdk.SockAddr, error)
	writeCB, sendfileCB      func(int, error)
	shutCB, connCB, sendToCB func(error)
	acceptCB                 func(int, *sdk.SockAddr, error)
	readF                    func([]byte, error)
	recvF                    func([]byte, *sdk.SockAddr, error)
	writeF, sendfileF        func(int, error)
	shutF, connF, sendToF    func(error)
	acceptF                  func(int, *sdk.SockAddr, error)
}

func (w *fdWrap) onRead(b []byte, err error) { w.readCB(b, w.d.err(err)) }
func (w *fdWrap) onRecvFrom(b []byte, a *sdk.SockAddr, err error) {
	w.recvCB(b, a, w.d.err(err))
}
func (w *fdWrap) onWrite(n int, err error) { cb := w.writeCB; w.writeCB = nil; cb(n, w.d.err(err)) }
func (w *fdWrap) onSendfile(n int, err error) {
	cb := w.sendfileCB
	w.sendfileCB = nil
	cb(n, w.d.err(err))
}
func (w *fdWrap) onShutdown(err error) { cb := w.shutCB; w.shutCB = nil; cb(w.d.err(err)) }
func (w *fdWrap) onConnect(err error)  { cb := w.connCB; w.connCB = nil; cb(w.d.err(err)) }
func (w *fdWrap) onSendTo(err error)   { cb := w.sendToCB; w.sendToCB = nil; cb(w.d.err(err)) }
func (w *fdWrap) onAccept(fd int, a *sdk.SockAddr, err error) {
	w.acceptCB(fd, a, w.d.err(err))
}

func (w *fdWrap) ReadStart(alloc func(int) []byte, cb func([]byte, error)) error {
	if w.readF == nil {
		w.readF = w.onRead
	}
	w.readCB = cb
	return w.FD.ReadStart(alloc, w.readF)
}

func (w *fdWrap) RecvFromStart(alloc func(int) []byte, cb func([]byte, *sdk.SockAddr, error)) error {
	if w.recvF == nil {
		w.recvF = w.onRecvFrom
	}
	w.recvCB = cb
	return w.FD.RecvFromStart(alloc, w.recvF)
}

// The one-shot operations keep their callback only while their direction
// is free: a second operation that fails with ErrBusy must not replace
// the callback of the one pending.

func (w *fdWrap) Write(bufs [][]byte, done func(int, error)) error {
	if w.writeF == nil {
		w.writeF = w.onWrite
	}
	if w.writeCB != nil {
		return w.FD.Write(bufs, done) // ErrBusy, from the inner driver
	}
	w.writeCB = done
	if err := w.FD.Write(bufs, w.writeF); err != nil {
		w.writeCB = nil
		return err
	}
	return nil
}

func (w *fdWrap) Sendfile(file int, off int64, count int, done func(int, error)) error {
	if w.sendfileF == nil {
		w.sendfileF = w.onSendfile
	}
	if w.sendfileCB != nil {
		return w.FD.Sendfile(file, off, count, done)
	}
	w.sendfileCB = done
	if err := w.FD.Sendfile(file, off, count, w.sendfileF); err != nil {
		w.sendfileCB = nil
		return err
	}
	return nil
}

func (w *fdWrap) Shutdown(done func(error)) error {
	if w.shutF == nil {
		w.shutF = w.onShutdown
	}
	if w.shutCB != nil {
		return w.FD.Shutdown(done)
	}
	w.shutCB = done
	if err := w.FD.Shutdown(w.shutF); err != nil {
		w.shutCB = nil
		return err
	}
	return nil
}

func (w *fdWrap) Connect(sa *sdk.SockAddr, done func(error)) error {
	if w.connF == nil {
		w.connF = w.onConnect
	}
	if w.connCB != nil {
		return w.FD.Connect(sa, done)
	}
	w.connCB = done
	if err := w.FD.Connect(sa, w.connF); err != nil {
		w.connCB = nil
		return err
	}
	return nil
}

func (w *fdWrap) SendTo(b []byte, to *sdk.SockAddr, done func(error)) error {
	if w.sendToF == nil {
		w.sendToF = w.onSendTo
	}
	if w.sendToCB != nil {
		return w.FD.SendTo(b, to, done)
	}
	w.sendToCB = done
	if err := w.FD.SendTo(b, to, w.sendToF); err != nil {
		w.sendToCB = nil
		return err
	}
	return nil
}

func (w *fdWrap) Accept(max int, cb func(int, *sdk.SockAddr, error)) error {
	if w.acceptF == nil {
		w.acceptF = w.onAccept
	}
	w.acceptCB = cb
	return w.FD.Accept(max, w.acceptF)
}

// Close implements sdk.FD: the inner Close (which writes the
// cancellations), then Forget, once.
func (w *fdWrap) Close() error {
	err := w.FD.Close()
	if !w.closed {
		w.closed = true
		w.d.forget(w.fd)
	}
	return err
}
