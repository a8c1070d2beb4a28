package executor

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/loopkernel/loopkernel/sdk"
)

// What a process pool's call and answer say: the messages of the worker
// channel (pool_frame.go for their framing, pool_chan.go for the socket).
// A call is an envelope: a fixed header (the user's function, the call's
// deadline, where the argument is), then the function's name and, when it is
// small, the argument itself. An answer is a fixed header (how the call
// ended, where the result is), then the inline result or the error's text.
//
// Large arguments and results go through two memfds the host made for that
// worker, which the worker opens by /proc/HOSTPID/fd/N, instead of through
// the socket, so a 100 MiB argument costs one copy in and a mapping out
// rather than a copy per packet on each side.
//
// Every process of the program registers the worker's call-plane functions
// (setup, cancel) from this package's init, the worker included, since it
// is the same program.

const (
	setupFuncName  = "loopkernel/process.setup"
	cancelFuncName = "loopkernel/process.cancel"
)

func init() {
	sdk.RegisterFunc(setupFuncName, workerSetup)
	sdk.RegisterFunc(cancelFuncName, workerCancel)
}

// Envelope header (little-endian), 40 bytes, then the name, then the inline
// argument (absent when flagArgShm is set):
//
//	0  u8   version (1)
//	1  u8   flags: bit 0 the argument is in the argument memfd
//	2  u16  name length
//	4  u32  reserved, 0
//	8  i64  deadline, Unix nanoseconds; 0 for none
//	16 u32  the host's pid (whose /proc/PID/fd holds the memfds)
//	20 i32  argument memfd, in the host; -1 for none
//	24 i32  result memfd, in the host; -1 for none
//	28 u32  result threshold: a result this long or longer goes to the result memfd
//	32 u64  argument length, when it is in the memfd
//
// Answer header, 16 bytes, then the inline result (absent when flagResShm),
// or the error's text:
//
//	0  u8   flags: bit 0 the result is in the result memfd
//	1  u8   status: 0 a result, 1 the function failed (its *sdk.CallError's
//	        message follows), 2 no function of that name, 3 the worker could
//	        not run the call (the reason follows)
//	2  6    reserved, 0
//	8  u64  result length, when it is in the memfd
const (
	envVersion   = 1
	envHeaderLen = 40
	resHeaderLen = 16
	flagArgShm   = 1
	flagResShm   = 1
	maxNameLen   = 256

	statusOK      = 0
	statusFailed  = 1
	statusUnknown = 2
	statusError   = 3
)

var le = binary.LittleEndian

// envelope is a decoded call envelope.
type envelope struct {
	flags     uint8
	name      string
	deadline  int64
	hostPID   int
	argFD     int
	resFD     int
	threshold uint32
	argLen    uint64
	inline    []byte
}

// errEnvelope marks an envelope the worker cannot read: only a host of
// another version of this program sends one.
var errEnvelope = errors.New("process pool: malformed call envelope")

// appendEnvelope writes the header and name for e to dst; the caller
// appends the inline argument, if any.
func appendEnvelope(dst []byte, e *envelope) []byte {
	var h [envHeaderLen]byte
	h[0] = envVersion
	h[1] = e.flags
	le.PutUint16(h[2:], uint16(len(e.name)))
	le.PutUint64(h[8:], uint64(e.deadline))
	le.PutUint32(h[16:], uint32(e.hostPID))
	le.PutUint32(h[20:], uint32(int32(e.argFD)))
	le.PutUint32(h[24:], uint32(int32(e.resFD)))
	le.PutUint32(h[28:], e.threshold)
	le.PutUint64(h[32:], e.argLen)
	dst = append(dst, h[:]...)
	return append(dst, e.name...)
}

func decodeEnvelope(b []byte) (envelope, error) {
	var e envelope
	if len(b) < envHeaderLen || b[0] != envVersion || b[1]&^flagArgShm != 0 || le.Uint32(b[4:]) != 0 {
		return e, errEnvelope
	}
	n := int(le.Uint16(b[2:]))
	if n == 0 || n > maxNameLen || len(b) < envHeaderLen+n {
		return e, errEnvelope
	}
	e.flags = b[1]
	e.deadline = int64(le.Uint64(b[8:]))
	e.hostPID = int(le.Uint32(b[16:]))
	e.argFD = int(int32(le.Uint32(b[20:])))
	e.resFD = int(int32(le.Uint32(b[24:])))
	e.threshold = le.Uint32(b[28:])
	e.argLen = le.Uint64(b[32:])
	e.name = string(b[envHeaderLen : envHeaderLen+n])
	e.inline = b[envHeaderLen+n:]
	if e.flags&flagArgShm != 0 && (len(e.inline) != 0 || e.argFD < 0) {
		return e, errEnvelope
	}
	return e, nil
}

// answer is a decoded answer header and what follows it.
type answer struct {
	flags  uint8
	status uint8
	shmLen uint64
	body   []byte // the inline result, or the error's text
}

// appendAnswer writes an answer header to dst; the caller appends the body.
func appendAnswer(dst []byte, flags, status uint8, shmLen uint64) []byte {
	var h [resHeaderLen]byte
	h[0], h[1] = flags, status
	le.PutUint64(h[8:], shmLen)
	return append(dst, h[:]...)
}

func decodeAnswer(b []byte) (answer, error) {
	var a answer
	if len(b) < resHeaderLen || b[0]&^flagResShm != 0 || b[1] > statusError {
		return a, fmt.Errorf("%w: an answer of %d bytes starting % x", errMalformed, len(b), b[:min(len(b), 2)])
	}
	for _, r := range b[2:8] {
		if r != 0 {
			return a, fmt.Errorf("%w: reserved answer bytes % x", errMalformed, b[2:8])
		}
	}
	a.flags, a.status, a.shmLen, a.body = b[0], b[1], le.Uint64(b[8:]), b[resHeaderLen:]
	switch {
	case a.flags&flagResShm != 0 && (a.status != statusOK || len(a.body) != 0):
		return a, fmt.Errorf("%w: a result both inline and in shared memory, or a failure in shared memory", errMalformed)
	case a.flags&flagResShm == 0 && a.shmLen != 0:
		return a, fmt.Errorf("%w: a shared-memory length on an inline answer", errMalformed)
	}
	return a, nil
}
