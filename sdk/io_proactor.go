package sdk

import "time"

// Proactor is the completion back-end family: the kernel's I/O operations
// as plain records submitted to a back-end that performs them and reports
// each one's result, as io_uring's submission and completion queue entries
// are, but in our own terms so that the same records can cross a process
// boundary (on shared-memory rings, issue 7). A completion driver adapts a
// Proactor to the I/O seam (Driver), as driver/readiness adapts a Selector.
//
// The bundled implementation is the io_uring back-end, "uring", in
// plugins/proactor (in process only so far); driver/completion is the
// driver over it.
type Proactor interface {
	// Submit queues ops; they reach the back-end by the next Complete at
	// the latest. Each op's buffers belong to the back-end until its
	// completion has been returned (or, for a multishot op, its final one).
	Submit(ops []Submission) error
	// Complete waits up to timeout (negative: indefinitely; zero: not at
	// all) for completions, fills done and returns how many it filled.
	Complete(done []Completion, timeout time.Duration) (int, error)
	// Wake makes the current Complete return promptly; any goroutine.
	Wake() error
	// ProvideBuffers registers a group of equally sized buffers the
	// back-end may fill on its own for reads that ask for group (a
	// provided-buffer ring); a completion names the buffer it used.
	ProvideBuffers(group uint16, bufs [][]byte) error
	// Capabilities reports the operations the back-end supports (Op
	// values, by name) and its name.
	Capabilities() ProactorCapabilities
	// Close cancels what is in flight and releases the back-end.
	Close() error
}

// Op is the kind of a submitted operation.
type Op uint8

// The operations a Proactor may support.
const (
	OpNop      Op = iota
	OpRead        // read into Buf, or a provided buffer of Group
	OpWrite       // writev of Bufs
	OpAccept      // accept4; multishot if Flags has SubMultishot
	OpConnect     // connect to Addr
	OpShutdown    // shutdown(SHUT_WR)
	OpRecvFrom    // recvmsg with a source address
	OpSendTo      // sendmsg to Addr
	OpSendfile    // from file descriptor Aux at Offset, Len bytes
	OpPoll        // readiness of Events (for descriptor watching)
	OpCancel      // cancel the operation whose UserData is Aux
)

// Submission flags.
const (
	// SubMultishot: the operation completes many times until cancelled.
	SubMultishot uint32 = 1 << iota
	// SubProvidedBuffer: a read takes a buffer from group Group.
	SubProvidedBuffer
)

// Submission is one operation for the back-end: io_uring's SQE in our
// terms.
type Submission struct {
	Op       Op
	Flags    uint32
	FD       int32
	Events   Events // OpPoll
	Group    uint16 // provided-buffer group
	Offset   int64
	Len      uint32
	Aux      uint64 // OpSendfile: the file descriptor; OpCancel: the target
	Buf      []byte
	Bufs     [][]byte
	Addr     *SockAddr
	UserData uint64 // returned in the completion, to find the operation
}

// Completion is one result: io_uring's CQE in our terms.
type Completion struct {
	UserData uint64
	// Res is the byte count (or new descriptor for OpAccept) when
	// non-negative, else a negated errno, as the system call would return.
	Res int32
	// More: a multishot operation stays armed and will complete again.
	More bool
	// Buffer is the provided buffer the read used (when HasBuffer), by
	// group and index, to hand back with ProvideBuffers once consumed.
	HasBuffer bool
	Group     uint16
	Buffer    uint16
}

// ProactorCapabilities describes a Proactor.
type ProactorCapabilities struct {
	Name string
	Ops  []string
}
