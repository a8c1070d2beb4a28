package kernel

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// Pipe transports (asyncio's connect_read_pipe and connect_write_pipe, its
// _UnixReadPipeTransport and _UnixWritePipeTransport) are the stream
// transport of kernel/net_stream.go in another mode, not a second copy of
// it: the same read path (the loop's shared buffer, or a BufferedProtocol's
// own), the same write path (tried at once, queued when refused, water
// marks), on the same I/O seam, so they run on every driver and placement
// the socket transport runs on. What a pipe changes is small and lives in
// streamKind:
//
//   - a read pipe only reads; its EOF is the end (EOFReceived is called,
//     its answer ignored, then ConnectionLost(nil)), as in asyncio;
//   - a write pipe only writes; WriteEOF is Close (a pipe has no
//     half-close); and because nothing else would tell it that the reader
//     went away until the next write failed, a pipe or socket it writes to
//     is watched for readability, which is how the kernel reports the far
//     end's close (asyncio does the same). The transport then ends at once:
//     ConnectionLost(nil) if nothing was buffered, or an error matching
//     syscall.EPIPE if data was lost. A write that meets the closed pipe
//     fails with EPIPE too; SIGPIPE is never fatal (the Go runtime ignores
//     it for descriptors other than 1 and 2, and the driver's socket writes
//     use MSG_NOSIGNAL).
//
// Watching needs the driver's watch capability (sdk.CapWatch); on a driver
// without it a write pipe learns that its reader is gone from its next
// write's EPIPE instead.

// streamKind is what a stream transport is connected to.
type streamKind uint8

const (
	socketStream streamKind = iota // a connected stream socket, both ways
	readPipe                       // the read end of a pipe, FIFO, socket or device
	writePipe                      // the write end of a pipe, FIFO or socket: watched for the reader's close
	writeDevice                    // a character device written to (a terminal): not watched
)

func (k streamKind) writeOnly() bool { return k == writePipe || k == writeDevice }

func (k streamKind) String() string {
	switch k {
	case readPipe:
		return "ReadPipeTransport"
	case writePipe, writeDevice:
		return "WritePipeTransport"
	}
	return "StreamTransport"
}

// ErrNotPipe: ConnectReadPipe or ConnectWritePipe was given a descriptor
// that is not a pipe, FIFO, socket or character device (a regular file or
// a directory, which can always be read and written without waiting and so
// cannot be watched; asyncio refuses them with ValueError). It matches
// ErrInvalidArgument too.
var ErrNotPipe = fmt.Errorf("only pipes, FIFOs, sockets and character devices have pipe transports: %w", ErrInvalidArgument)

// errReadOnlyPipe: a write on a read pipe transport (reachable only by a
// type assertion past ReadTransport).
var errReadOnlyPipe = fmt.Errorf("a read pipe transport cannot write: %w", ErrInvalidArgument)

// ConnectReadPipe wraps the read end of a pipe (or a FIFO, a socket, a
// character device such as a terminal or a pty's master) in a transport
// whose protocol, made by factory, receives what arrives (asyncio:
// loop.connect_read_pipe). The protocol is a Protocol or a
// BufferedProtocol; at the end of the stream its EOFReceived is called and
// then ConnectionLost(nil), whatever EOFReceived answers. A read error ends
// the transport with ConnectionLost(err) (a pty's master reads EIO once
// every slave is closed; it arrives that way, as in asyncio).
//
// The transport owns pipe from now on: it is made non-blocking and closed
// when the transport ends. Do not use it (or its Fd, which would make it
// blocking again) afterwards.
func ConnectReadPipe[P BaseProtocol](co *Co, factory func() P, pipe *os.File) (ReadTransport, P, error) {
	t, p, err := connectPipe(co, factory, pipe, readPipe)
	if err != nil {
		return nil, p, fmt.Errorf("connect read pipe: %w", err)
	}
	return t, p, nil
}

// ConnectWritePipe wraps the write end of a pipe (or a FIFO, a socket, a
// character device) in a write transport (asyncio:
// loop.connect_write_pipe): Write, Writelines, WriteEOF (which is Close: a
// pipe has no half-close), Abort, the write buffer and its water marks,
// which pause and resume a protocol implementing WriteFlowControl. The
// protocol may be any BaseProtocol. When the reader goes away the
// transport ends with ConnectionLost: nil if nothing was waiting to be
// written, else an error matching syscall.EPIPE (see the notes on pipe
// transports above for how that is noticed). It owns pipe, as
// ConnectReadPipe does.
func ConnectWritePipe[P BaseProtocol](co *Co, factory func() P, pipe *os.File) (WriteTransport, P, error) {
	t, p, err := connectPipe(co, factory, pipe, writePipe)
	if err != nil {
		return nil, p, fmt.Errorf("connect write pipe: %w", err)
	}
	return t, p, nil
}

// connectPipe checks pipe, makes the protocol and the transport, and waits
// for ConnectionMade to have run, as startTransport does for sockets.
func connectPipe[P BaseProtocol](co *Co, factory func() P, pipe *os.File, kind streamKind) (*streamTransport, P, error) {
	var zero P
	if co == nil || factory == nil || pipe == nil {
		return nil, zero, fmt.Errorf("nil coroutine, factory or pipe: %w", ErrInvalidArgument)
	}
	l := co.loop
	if err := l.checkUsable(); err != nil {
		return nil, zero, err
	}
	fd, mode, err := pipeFD(pipe)
	if err != nil {
		return nil, zero, err
	}
	if kind == writePipe && mode == unix.S_IFCHR {
		kind = writeDevice
	}
	// From here the pipe is the transport's: a failure closes it, as a
	// failed startTransport closes its socket.
	p, err := callGuarded(func() (P, error) { return factory(), nil })
	if err != nil {
		pipe.Close()
		return nil, zero, fmt.Errorf("protocol factory: %w", err)
	}
	waiter := CreateFuture[struct{}](l)
	t, err := newPipeTransport(l, fd, pipe, kind, p, waiter)
	if err != nil {
		pipe.Close()
		return nil, zero, err
	}
	if _, err := waiter.Await(co); err != nil {
		t.Abort()
		return nil, zero, err
	}
	return t, p, nil
}

// pipeFD reads pipe's descriptor without os.File.Fd (which would switch it
// to blocking mode), checks its type and makes it non-blocking.
func pipeFD(pipe *os.File) (fd int, mode uint32, err error) {
	rc, err := pipe.SyscallConn()
	if err != nil {
		return -1, 0, fmt.Errorf("%s: %w", pipe.Name(), err)
	}
	fd = -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, 0, fmt.Errorf("%s: %w", pipe.Name(), err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return -1, 0, fmt.Errorf("%s: fstat: %w", pipe.Name(), err)
	}
	mode = st.Mode & unix.S_IFMT
	switch mode {
	case unix.S_IFIFO, unix.S_IFSOCK, unix.S_IFCHR:
	default:
		return -1, 0, fmt.Errorf("%s is a %s: %w", pipe.Name(), fileTypeName(mode), ErrNotPipe)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return -1, 0, fmt.Errorf("%s: set non-blocking: %w", pipe.Name(), err)
	}
	return fd, mode, nil
}

func fileTypeName(mode uint32) string {
	switch mode {
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFLNK:
		return "symbolic link"
	}
	return "file of mode " + strconv.FormatUint(uint64(mode), 8)
}

// newPipeTransport makes the transport of one end of a pipe: fd, already
// non-blocking, is owned by the transport from now on (pipe, if not nil,
// is the *os.File it came in and is what gets closed). As for sockets,
// ConnectionMade runs in the next loop iteration, then reading (or the
// reader's watch) starts, then waiter gets its result.
func newPipeTransport(l *Loop, fd int, pipe *os.File, kind streamKind, proto BaseProtocol, waiter *Future[struct{}]) (*streamTransport, error) {
	if proto == nil {
		return nil, fmt.Errorf("nil protocol: %w", ErrInvalidArgument)
	}
	if kind == readPipe {
		if err := checkStreamProtocol(proto); err != nil {
			return nil, err
		}
	}
	t := &streamTransport{kind: kind}
	if err := t.init(t, l, nil, fd, nil); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	t.pipe = pipe
	t.allocFn, t.readFn, t.wroteFn = t.alloc, t.dataRead, t.wrote
	t.setProtocol(proto)
	if _, err := l.CallSoon(func() { t.start(waiter) }); err != nil {
		t.releaseIO()
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	return t, nil
}

// watchReader watches a write pipe for readability, which is how the
// kernel reports that the read end was closed (EPOLLERR on a pipe, EOF on
// a socket). Only a driver with the watch capability can.
func (t *streamTransport) watchReader() {
	if t.kind != writePipe || t.io == nil || !t.loop.drv.Capabilities().Has(sdk.CapWatch) {
		return
	}
	if err := t.io.f.Watch(sdk.Read, t.readerGone); err != nil {
		t.fatalError(busyErr("watch pipe reader", t.fd, err))
	}
}

// readerGone ends a write pipe whose reader went away: quietly if nothing
// was lost, with EPIPE if buffered data could not be delivered (asyncio's
// _UnixWritePipeTransport._read_ready).
func (t *streamTransport) readerGone() {
	if t.connLost {
		return
	}
	if t.wq.size > 0 {
		t.forceClose(t.opError("write", nil, unix.EPIPE))
		return
	}
	t.forceClose(nil)
}

// pipeOpError is opError for a pipe: a *os.PathError naming the pipe and
// wrapping the errno, so that errors.Is(err, syscall.EPIPE) holds.
func pipeOpError(op string, fd int, pipe *os.File, err error) error {
	name := "pipe fd " + strconv.Itoa(fd)
	if pipe != nil {
		name = pipe.Name()
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return err
	}
	return &os.PathError{Op: op, Path: name, Err: err}
}
