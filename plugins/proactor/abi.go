package proactor

// The io_uring ABI this back-end uses, from include/uapi/linux/io_uring.h,
// written out because golang.org/x/sys/unix carries only the system call
// numbers. Only what is used is listed.

const (
	opNop         = 0
	opPollAdd     = 6
	opSendmsg     = 9
	opAccept      = 13
	opAsyncCancel = 14
	opConnect     = 16
	opRead        = 22
	opSend        = 26
	opRecv        = 27
	opShutdown    = 34
)

// Setup flags, features and enter flags.
const (
	setupCQSize    = 1 << 3
	setupClamp     = 1 << 4
	setupSubmitAll = 1 << 7

	featSingleMmap   = 1 << 0
	featNoDrop       = 1 << 1
	featSubmitStable = 1 << 2
	featExtArg       = 1 << 8

	enterGetEvents = 1 << 0
	enterExtArg    = 1 << 3
)

// mmap offsets of the rings.
const (
	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000
)

// SQE flags, CQE flags and per-opcode flags.
const (
	sqeBufferSelect = 1 << 5

	cqeFBuffer     = 1 << 0
	cqeFMore       = 1 << 1
	cqeBufferShift = 16

	acceptMultishot = 1 << 0 // in ioprio
	recvMultishot   = 1 << 1 // in ioprio
)

// Register opcodes.
const (
	registerPbufRing   = 22
	unregisterPbufRing = 23
)

// params is struct io_uring_params.
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqOffsets
	cqOff                                                                  cqOffsets
}

type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// sqe is struct io_uring_sqe (64 bytes), with the unions named after the
// member this back-end uses.
type sqe struct {
	opcode   uint8
	flags    uint8
	ioprio   uint16
	fd       int32
	off      uint64 // off, addr2
	addr     uint64
	len      uint32
	opFlags  uint32 // msg_flags, poll32_events, accept_flags, cancel_flags
	userData uint64
	bufGroup uint16
	_        uint16
	_        int32
	_        [2]uint64
}

// cqe is struct io_uring_cqe.
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// getEventsArg is struct io_uring_getevents_arg.
type getEventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	_         uint32
	ts        uint64
}

// bufReg is struct io_uring_buf_reg.
type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16
	_           [3]uint64
}

// ringBuf is struct io_uring_buf; the ring's tail overlays the last field
// of its first entry.
type ringBuf struct {
	addr uint64
	len  uint32
	bid  uint16
	resv uint16
}

// Opcodes used only as fallbacks on descriptors that are not sockets.
const (
	opWritev        = 2
	opReadMultishot = 49
)

const (
	pollAddMulti   = 1 << 0 // in len
	asyncCancelAll = 1 << 0
	asyncCancelAny = 1 << 2
)

// iovec and msghdr are struct iovec and struct msghdr (LP64) with
// addresses as integers, so that writing them into mmap'd memory involves
// no Go pointer store (see Uring.submit).
type iovec struct {
	base, len uint64
}

type msghdr struct {
	name       uint64
	namelen    uint32
	_          uint32
	iov        uint64
	iovlen     uint64
	control    uint64
	controllen uint64
	flags      int32
	_          int32
}
