package sdk

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// The I/O seam: the operations the kernel's transports are written against,
// whatever performs them.
//
// The model is libuv's stream API (uv_read_start with an allocation
// callback, uv_write with a completion, uv_listen/uv_accept,
// uv_tcp_connect, uv_shutdown, uv_close), which libuv runs over readiness
// on Unix and over completions on Windows, and Go's internal/poll.FD, whose
// methods have a readiness body (try, EAGAIN, wait) and a completion body
// (submit, wait for the result) that callers cannot tell apart. A Driver is
// one such body for one loop: driver/readiness performs the operations
// itself on readiness reported by any Selector; a completion driver (the
// io_uring proactor, issue 7) submits them to a Proactor and reports what
// it completed. Transports, servers, connect, the sock_* calls and sendfile
// are each written once, above this seam.
//
// # Contract
//
// Threads. Every method of a Driver and of an FD is called from the loop's
// goroutine only, except Driver.Wake, which any goroutine may call.
//
// Callbacks. A callback never runs inside the call that submitted its
// operation: Poll returns it, and the kernel runs it in its next batch of
// ready callbacks, in the order Poll returned them (asyncio's ordering: I/O
// callbacks join the batch after what was already scheduled). Poll hands
// out method values the driver made once per descriptor, never a closure
// per event, so delivering a completion allocates nothing.
//
// Buffers. A buffer handed to an operation (Write's bufs, SendTo's b, the
// buffer alloc returned) belongs to the driver until that operation's
// callback has run, even after a cancel: a completion back-end may still be
// reading or filling it. A read may instead complete with a buffer the
// driver provides (io_uring's provided-buffer rings); such a buffer is valid
// only during the callback.
//
// Multishot. ReadStart, RecvFromStart, Accept and Watch are submitted once
// and complete any number of times, until stopped.
//
// Partial completion. Write and Sendfile may complete having moved only part
// of their bytes; the caller resubmits the rest. A resubmission made from
// inside the completion callback costs the readiness driver no system call
// (the descriptor stays armed).
//
// Cancellation. Stopping a multishot operation (ReadStop, AcceptStop,
// Unwatch) ends it without a further callback; callbacks of it that Poll
// already returned but that have not run yet are dropped by the driver.
// Closing the FD stops those and cancels the one-shot operations (Write,
// SendTo, Connect, Sendfile): each still gets its callback, once, with an
// error matching ErrCanceled, unless it completed first. Cancellation races
// with completion and either may win; the caller must accept both.
// Cancel(ev) does the same for one direction. Once FD.Close returns, the
// kernel may close the descriptor: the driver no longer names it in any
// system call (a completion driver's operations in flight hold a reference
// to the open file, not to its number).
//
// Busy. One operation per direction may be pending on a descriptor: one of
// ReadStart, RecvFromStart, Accept, Watch(Read) on the read side; one of
// Write, SendTo, Connect, Sendfile, Watch(Write) on the write side. A
// second fails with ErrBusy.
type Driver interface {
	// Open hands fd, which the kernel owns and keeps owning, to the driver
	// for operations. It fails with ErrExists if fd is already open in this
	// driver. Opening costs the readiness driver no system call.
	Open(fd int) (FD, error)
	// Poll waits for completions, up to timeout (negative: until one
	// arrives or Wake is called; zero: do not block), and fills ready with
	// the callbacks the kernel must run in its next batch, returning how
	// many. It never runs a callback itself. An error means the back-end
	// failed for good.
	Poll(ready []func(), timeout time.Duration) (int, error)
	// Wake makes the current Poll, or the next one, return promptly. It is
	// safe from any goroutine.
	Wake() error
	// Capabilities reports the driver's name, its back-end and which
	// optional operations it supports.
	Capabilities() DriverCapabilities
	// Close cancels every open FD and releases the back-end (which the
	// driver owns). It closes no descriptor.
	Close() error
}

// FD is one descriptor open in a Driver: the operations the kernel may
// submit on it. Addresses are in kernel form (SockAddr) so that neither
// side converts or allocates per datagram or per accepted connection.
type FD interface {
	// ReadStart reads the stream until ReadStop: before each read the driver
	// calls alloc(hint) for a buffer (hint is a suggested size, -1 for no
	// preference) and then cb with the bytes read, a prefix of that buffer
	// or of a buffer of the driver's own. End of stream is cb(nil, io.EOF).
	// A read error is passed to cb and reading goes on until stopped. If
	// alloc stops reading (or returns an empty buffer), nothing is read.
	ReadStart(alloc func(hint int) []byte, cb func(data []byte, err error)) error
	// ReadStop stops ReadStart or RecvFromStart.
	ReadStop()
	// TryRead reads now if it can, without waiting (asyncio sock_recv's
	// first attempt); it fails with an error matching ErrWouldBlock if
	// nothing is there.
	TryRead(b []byte) (int, error)
	// TryWrite writes what the descriptor takes of bufs now, in order
	// (uv_try_write), and returns how many bytes that was; an error matching
	// ErrWouldBlock means nothing was taken. The buffers are the caller's
	// again when it returns.
	TryWrite(bufs [][]byte) (int, error)
	// Write writes bufs in order and calls done with how many bytes went
	// out, which may be fewer than offered (resubmit the rest), or with the
	// error that stopped it. The slice headers and bytes of bufs must stay
	// unchanged until done runs.
	Write(bufs [][]byte, done func(n int, err error)) error
	// Shutdown shuts the write side down (shutdown(2) SHUT_WR) and reports
	// the result to done. The caller submits it once its writes are done.
	Shutdown(done func(err error)) error
	// Accept accepts connections on a listening socket until AcceptStop,
	// calling cb once per connection with the new descriptor (non-blocking,
	// close-on-exec, now the caller's) and the peer's address, valid during
	// the call only; or with fd -1 and the error that stopped one accept
	// (the operation stays armed: the caller decides, e.g. to pause on
	// EMFILE). max bounds how many connections one readiness event takes.
	Accept(max int, cb func(fd int, peer *SockAddr, err error)) error
	// AcceptStop stops Accept.
	AcceptStop()
	// Connect connects the socket to sa and calls done with the outcome.
	Connect(sa *SockAddr, done func(err error)) error
	// RecvFromStart receives datagrams until ReadStop, as ReadStart, each
	// with its sender's address (valid during the call; Len 0 when there is
	// none).
	RecvFromStart(alloc func(hint int) []byte, cb func(data []byte, from *SockAddr, err error)) error
	// TryRecvFrom receives one datagram now if one is there.
	TryRecvFrom(b []byte, from *SockAddr) (int, error)
	// TrySendTo sends one datagram now if the socket takes it; to may be
	// nil on a connected socket.
	TrySendTo(b []byte, to *SockAddr) error
	// SendTo sends one datagram once the socket takes it and calls done.
	// b and *to stay the driver's until then.
	SendTo(b []byte, to *SockAddr, done func(err error)) error
	// Sendfile sends up to count bytes of file (a regular file's
	// descriptor, which must stay open until done runs) from offset, and
	// calls done with the bytes sent (maybe fewer: resubmit). Only drivers
	// with the CapSendfile capability support it; the others fail with
	// ErrUnsupported.
	Sendfile(file int, offset int64, count int, done func(n int, err error)) error
	// Watch calls cb every time the descriptor is ready for ev (Read or
	// Write; level-triggered, as AddReader and AddWriter promise) until
	// Unwatch. A second Watch of the same direction replaces cb. Only
	// drivers with the CapWatch capability support it; the others fail with
	// an error that matches ErrUnsupported and names the capability.
	Watch(ev Events, cb func()) error
	// Unwatch stops Watch for ev.
	Unwatch(ev Events)
	// Cancel cancels the operation pending in direction ev (Read or
	// Write), as Close would, leaving the other direction alone: for a
	// caller that gave up waiting (a cancelled task).
	Cancel(ev Events)
	// Close cancels every pending operation (see the contract) and detaches
	// the descriptor: once Close returns the driver makes no more system
	// calls naming it, so the kernel may close it. Cancelled operations
	// still complete later, with ErrCanceled, and keep their buffers until
	// then; a completion driver has by then submitted its cancellations,
	// and the operations still in flight hold their own reference to the
	// open file, not its number.
	Close() error
}

// SockAddr is a socket address in kernel form (struct sockaddr_storage and
// its length), so that a driver can pass it to the system call or the
// submission as it is. Len 0 means no address.
type SockAddr struct {
	Raw unix.RawSockaddrAny
	Len uint32
}

// Capability names, as listed in DriverCapabilities.Ops and named in the
// errors of a driver that lacks one.
const (
	// CapWatch: Watch and Unwatch (the kernel's AddReader and AddWriter),
	// as Twisted's IReactorFDSet.
	CapWatch = "watch"
	// CapSendfile: Sendfile, zero-copy from a regular file to a socket.
	CapSendfile = "sendfile"
	// CapMultishot: one submission of Accept or ReadStart completes many
	// times inside the back-end (a readiness driver re-arms itself, which
	// costs nothing, and so reports it too).
	CapMultishot = "multishot"
	// CapProvidedBuffers: reads may complete in buffers of the driver's own.
	CapProvidedBuffers = "provided-buffers"
)

// DriverCapabilities describes a driver, so that the conformance suite can
// skip a case and name what was missing, and so that `loopkernel policies`
// can say what runs underneath.
type DriverCapabilities struct {
	// Name identifies the driver, e.g. "readiness".
	Name string
	// Family is the back-end family under it ("selector" or "proactor")
	// and Backend the back-end's own name ("epoll", "poll", "uring").
	Family, Backend string
	// Ops lists the optional operations supported (Cap* names).
	Ops []string
	// Selector is the capabilities of the selector under a readiness
	// driver (zero otherwise), for the cases that depend on it.
	Selector Capabilities
}

// Has reports whether the driver supports the optional operation op.
func (c DriverCapabilities) Has(op string) bool {
	for _, o := range c.Ops {
		if o == op {
			return true
		}
	}
	return false
}

// Errors of the seam. Drivers wrap them (and the system call's errno) so
// that errors.Is sees both.
var (
	// ErrCanceled: the operation was stopped or its FD closed before it
	// completed.
	ErrCanceled = errors.New("operation canceled")
	// ErrBusy: an operation of the same direction is already pending.
	ErrBusy = errors.New("descriptor busy: an operation of that direction is pending")
	// ErrUnsupported: the driver lacks the capability the operation needs.
	ErrUnsupported = errors.New("operation not supported by the driver")
	// ErrWouldBlock: a Try operation found the descriptor not ready.
	ErrWouldBlock error = unix.EAGAIN
)
