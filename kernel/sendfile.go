package kernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// ErrSendfileNotAvailable: zero-copy sendfile(2) cannot be used for this
// file, socket or transport, and the caller asked for no fallback (asyncio:
// SendfileNotAvailableError). The error wrapping it says why.
var ErrSendfileNotAvailable = errors.New("sendfile is not available")

const (
	// maxSendfileChunk is the most one sendfile(2) call may move on Linux
	// (MAX_RW_COUNT); larger counts are sent in several calls.
	maxSendfileChunk = 0x7ffff000
	// sendfileFallbackBuf is the read size of the read-and-send fallback,
	// asyncio's SENDFILE_FALLBACK_READBUFFER_SIZE.
	sendfileFallbackBuf = 256 << 10
)

// sendfileTransport is what Sendfile needs from a transport beyond the
// Transport interface: a future that completes once the write buffer has
// drained (and fails if the connection is lost first), during which Write
// is refused, so that bytes sent around the transport's buffer cannot
// overtake or interleave with bytes in it. The kernel's stream transport
// implements it; a transport without it does not support Sendfile, as in
// asyncio.
type sendfileTransport interface {
	makeEmptyWaiter() (*Future[struct{}], error)
	resetEmptyWaiter()
}

// sendfileNoZeroCopy marks a transport whose bytes do not reach its socket
// unchanged (TLS, say): Sendfile must use the fallback for it even though
// its "socket" extra info is a *Socket.
type sendfileNoZeroCopy interface{ sendfileNoZeroCopy() }

// checkSendfileArgs is asyncio's _check_sendfile_params, with count 0 in
// place of None.
func checkSendfileArgs(op string, file *os.File, offset, count int64) error {
	if file == nil {
		return fmt.Errorf("%s: nil file: %w", op, unix.EINVAL)
	}
	if offset < 0 {
		return fmt.Errorf("%s: negative offset %d: %w", op, offset, unix.EINVAL)
	}
	if count < 0 {
		return fmt.Errorf("%s: negative count %d: %w", op, count, unix.EINVAL)
	}
	return nil
}

// SockSendfile sends file over the connected stream socket sock, from
// offset to EOF or at most count bytes (count 0: to EOF), and returns the
// bytes sent (asyncio: loop.sock_sendfile). It uses zero-copy sendfile(2)
// when file is a regular file, waiting for the socket to become writable
// whenever it is full; otherwise, with fallback, it reads the file and sends
// what it read, and without fallback it fails with ErrSendfileNotAvailable.
//
// The file position is left just after the last byte sent, even when the
// call fails or is cancelled, so the file's offset tells how much went out.
func SockSendfile(co *Co, sock *Socket, file *os.File, offset, count int64, fallback bool) (int64, error) {
	const op = "sock_sendfile"
	l, _, err := sockCheck(co, sock, op)
	if err != nil {
		return 0, err
	}
	if sock.sotype != unix.SOCK_STREAM {
		return 0, fmt.Errorf("%s: only SOCK_STREAM sockets, not %s: %w", op, typeName(sock.sotype), unix.EINVAL)
	}
	if err := checkSendfileArgs(op, file, offset, count); err != nil {
		return 0, err
	}
	n, err := l.sockSendfileNative(co, sock, file, offset, count)
	if err == nil || !errors.Is(err, ErrSendfileNotAvailable) || !fallback {
		return n, err
	}
	return l.sendfileFallback(co, file, offset, count, func(b []byte) (int, error) {
		return sockSendall(co, sock, b)
	})
}

// sockSendfileNative is the zero-copy loop, on the driver's sendfile
// operation. It fails with ErrSendfileNotAvailable, having sent nothing,
// when the file or socket cannot be used or the driver lacks the sendfile
// capability.
func (l *Loop) sockSendfileNative(co *Co, sock *Socket, file *os.File, offset, count int64) (sent int64, err error) {
	const op = "sock_sendfile"
	if c := l.drv.Capabilities(); !c.Has(sdk.CapSendfile) {
		return 0, fmt.Errorf("%s: driver %q lacks capability %q: %w", op, c.Name, sdk.CapSendfile, ErrSendfileNotAvailable)
	}
	st, err := file.Stat()
	if err != nil {
		return 0, fmt.Errorf("%s: %w: %w", op, ErrSendfileNotAvailable, err)
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("%s: %s is not a regular file: %w", op, file.Name(), ErrSendfileNotAvailable)
	}
	rc, err := file.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("%s: %w: %w", op, ErrSendfileNotAvailable, err)
	}
	ffd := -1
	if cerr := rc.Control(func(fd uintptr) { ffd = int(fd) }); cerr != nil {
		return 0, fmt.Errorf("%s: %w: %w", op, ErrSendfileNotAvailable, cerr)
	}
	// The file must stay open while the driver may use its descriptor.
	defer runtime.KeepAlive(file)
	end := st.Size()
	if count > 0 && offset+count < end {
		end = offset + count
	}
	pos := min(offset, end)
	defer func() {
		if sent > 0 {
			// asyncio leaves the position after the last byte sent, so the
			// caller can tell how far a failed transfer got.
			if _, serr := file.Seek(pos, io.SeekStart); serr != nil && err == nil {
				err = fmt.Errorf("%s: update file position: %w", op, serr)
			}
		}
	}()
	_, r, err := sockIO(co, sock, op)
	if err != nil {
		return 0, err
	}
	defer l.releaseIO(r)
	for pos < end {
		at, chunk := pos, int(min(end-pos, maxSendfileChunk))
		w := l.getWait(r, sdk.Write, nil)
		res, werr := w.wait(co, sdk.Write, op, r.f.Sendfile(ffd, at, chunk, w.nFn))
		if werr != nil {
			return sent, werr
		}
		pos += int64(res.n)
		sent += int64(res.n)
		switch {
		case res.err != nil:
			if sent == 0 && sendfileUnsupported(res.err) {
				return 0, fmt.Errorf("%s: %w: %w", op, ErrSendfileNotAvailable, osErr("sendfile", res.err))
			}
			return sent, sockErr("write", "sendfile", sock, sock.RemoteAddr(), res.err)
		case res.n == 0:
			return sent, nil // the file shrank under us: EOF came early
		}
	}
	return sent, nil
}

// sendfileUnsupported reports the errors by which sendfile(2) says it
// cannot move data between this pair of descriptors at all.
func sendfileUnsupported(err error) bool {
	switch err {
	case unix.EINVAL, unix.ENOSYS, unix.ENOTSUP, unix.ENOTSOCK, unix.EOVERFLOW:
		return true
	}
	return false
}

// sendfileFallback reads the file on the executor (a read may block, and
// file need not be a regular file) and hands each block to send, which
// reports how much of it went out even when it fails. A regular
// file is read with pread, so the file position is only ever moved once, at
// the end, to just past the last byte sent; a pipe or other stream is read
// from where it stands, and offset must then be 0.
func (l *Loop) sendfileFallback(co *Co, file *os.File, offset, count int64, send func([]byte) (int, error)) (sent int64, err error) {
	const op = "sendfile fallback"
	seekable := false
	if st, err := file.Stat(); err == nil && st.Mode().IsRegular() {
		seekable = true
	} else if offset != 0 {
		return 0, fmt.Errorf("%s: offset %d on a file that cannot seek: %w", op, offset, unix.ESPIPE)
	}
	defer func() {
		if sent > 0 && seekable {
			if _, serr := file.Seek(offset+sent, io.SeekStart); serr != nil && err == nil {
				err = fmt.Errorf("%s: update file position: %w", op, serr)
			}
		}
	}()
	size := int64(sendfileFallbackBuf)
	if count > 0 {
		size = min(size, count)
	}
	buf := make([]byte, size)
	for {
		want := int64(len(buf))
		if count > 0 {
			want = min(want, count-sent)
			if want <= 0 {
				return sent, nil
			}
		}
		b := buf[:want]
		at := offset + sent
		f, err := RunInExecutor(l, nil, func(context.Context) (int, error) {
			var n int
			var err error
			if seekable {
				n, err = file.ReadAt(b, at)
			} else {
				n, err = file.Read(b)
			}
			if err == io.EOF {
				err = nil
			}
			return n, err
		})
		if err != nil {
			return sent, fmt.Errorf("%s: %w", op, err)
		}
		n, err := f.Await(co)
		if err != nil {
			if !f.Done() {
				// Cancelled while the read runs: it still writes into buf,
				// which this call must no longer touch.
				buf = nil
			}
			return sent, err
		}
		if n == 0 {
			return sent, nil
		}
		k, err := send(b[:n])
		sent += int64(k)
		if err != nil {
			return sent, err
		}
	}
}

// Sendfile sends file over a stream transport, from offset to EOF or at
// most count bytes (count 0: to EOF), and returns the bytes sent (asyncio:
// loop.sendfile). The transport's write buffer is flushed first. Then, on
// a plain TCP or Unix transport, the bytes go from the file to the socket
// with zero-copy sendfile(2) while Write is refused and reading is paused;
// otherwise, with fallback, the file is read and written through the
// transport, one block at a time once the previous one has drained, and
// without fallback the call fails with ErrSendfileNotAvailable. The file
// position ends just after the last byte sent, as with SockSendfile.
func Sendfile(co *Co, t Transport, file *os.File, offset, count int64, fallback bool) (int64, error) {
	const op = "sendfile"
	if co == nil {
		return 0, fmt.Errorf("%s: nil coroutine handle: %w", op, unix.EINVAL)
	}
	l := co.loop
	if err := l.checkUsable(); err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	if err := checkSendfileArgs(op, file, offset, count); err != nil {
		return 0, err
	}
	st, ok := t.(sendfileTransport)
	if !ok {
		return 0, fmt.Errorf("%s: transport %T does not support sendfile: %w", op, t, ErrSendfileNotAvailable)
	}
	if t.IsClosing() {
		return 0, fmt.Errorf("%s: %w", op, ErrTransportClosed)
	}
	if _, noZC := t.(sendfileNoZeroCopy); !noZC {
		if v, _ := t.GetExtraInfo("socket"); v != nil {
			if sock, ok := v.(*Socket); ok {
				n, err := l.sendfileOverSocket(co, t, st, sock, file, offset, count)
				if err == nil || !errors.Is(err, ErrSendfileNotAvailable) || !fallback {
					return n, err
				}
			}
		}
	}
	if !fallback {
		return 0, fmt.Errorf("%s: transport %T cannot send zero-copy: %w", op, t, ErrSendfileNotAvailable)
	}
	return l.sendfileFallback(co, file, offset, count, func(b []byte) (int, error) {
		// Wait for the buffer to drain before each block, so the transport
		// never holds more than one block of the file.
		if err := awaitEmpty(co, st); err != nil {
			return 0, err
		}
		if err := t.Write(b); err != nil {
			return 0, err
		}
		return len(b), nil // the transport took (and copied) all of it
	})
}

// awaitEmpty waits until t's write buffer is empty.
func awaitEmpty(co *Co, st sendfileTransport) error {
	w, err := st.makeEmptyWaiter()
	if err != nil {
		return err
	}
	_, err = w.Await(co)
	st.resetEmptyWaiter()
	return err
}

// sendfileOverSocket is asyncio's _sendfile_native: drain, pause reading,
// send on the socket with writes refused, then restore the transport.
func (l *Loop) sendfileOverSocket(co *Co, t Transport, st sendfileTransport, sock *Socket, file *os.File, offset, count int64) (int64, error) {
	w, err := st.makeEmptyWaiter()
	if err != nil {
		return 0, err
	}
	defer st.resetEmptyWaiter()
	resume := t.IsReading()
	if err := t.PauseReading(); err != nil {
		return 0, err
	}
	if resume {
		defer t.ResumeReading()
	}
	if _, err := w.Await(co); err != nil {
		return 0, err
	}
	// The transport lends its socket to SockSendfile, which refuses a
	// descriptor an open transport uses (asyncio also takes the transport
	// out of its table for the transfer).
	if r := l.files.m[sock.Fd()]; r != nil && r.transport != nil {
		owner := r.transport
		r.transport = nil
		defer func() {
			if l.files.m[sock.Fd()] == r && r.transport == nil {
				r.transport = owner
			}
		}()
	}
	return SockSendfile(co, sock, file, offset, count, false)
}
