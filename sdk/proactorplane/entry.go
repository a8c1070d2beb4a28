package proactorplane

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Op is a submission's operation, as numbered on the wire (these numbers
// are the plane's own, stable across versions of sdk.Op).
type Op uint8

// The operations of version 1.
const (
	OpNop      Op = 0
	OpRead     Op = 1 // recv on Reg into a buffer of group Group (multishot with FlagMultishot)
	OpWrite    Op = 2 // send the arena bytes [ArenaOff, ArenaOff+ArenaLen) on Reg
	OpConnect  Op = 3 // connect Reg to the sockaddr in the arena (ArenaLen bytes)
	OpShutdown Op = 4 // shutdown(Reg, SHUT_WR)
	OpPoll     Op = 5 // poll Reg for Events (1 readable, 4 writable: POLLIN, POLLOUT)
	OpCancel   Op = 6 // cancel the operation whose user data is Aux
	OpRegister Op = 7 // take the descriptor sent with the REGISTER frame for Reg
	OpForget   Op = 8 // close the plugin's copy of Reg's descriptor
	OpProvide  Op = 9 // give read buffer Aux (an index) back to group Group
	opLimit    Op = 10
)

var opNames = [...]string{"NOP", "READ", "WRITE", "CONNECT", "SHUTDOWN", "POLL", "CANCEL", "REGISTER", "FORGET", "PROVIDE"}

func (o Op) String() string {
	if o < opLimit {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Entry flags.
const (
	FlagMultishot uint8 = 1 << 0
	FlagProvided  uint8 = 1 << 1
	flagsKnown          = FlagMultishot | FlagProvided
)

// Entry is one submission (64 bytes on the wire, little-endian).
type Entry struct {
	Op       Op
	Flags    uint8
	Group    uint16
	Reg      uint32 // the registration number of the descriptor
	UserData uint64 // returned in the result; bits 62 and 63 are the plugin's
	Aux      uint64 // CANCEL: target user data; PROVIDE: buffer index
	Offset   int64
	Len      uint32
	Events   uint32 // POLL: POLLIN (1) | POLLOUT (4)
	ArenaOff uint32 // WRITE, CONNECT: where in the arena the bytes are
	ArenaLen uint32
}

// Result flags.
const (
	ResMore   uint32 = 1 << 0 // a multishot operation stays armed
	ResBuffer uint32 = 1 << 1 // Buffer names the read buffer filled
	resKnown         = ResMore | ResBuffer
)

// Result is one completion (32 bytes on the wire, little-endian).
type Result struct {
	UserData uint64
	Res      int32 // bytes or a negated errno
	Flags    uint32
	Group    uint16
	Buffer   uint16
}

// ErrEntry: bytes that are no valid entry or result.
var ErrEntry = errors.New("proactor plane: malformed entry")

// UserDataReserved are the user-data bits a host must leave clear: the
// plugin's own operations (its doorbell) use them.
const UserDataReserved = uint64(3) << 62

// Put writes e into b (at least SQEntrySz bytes), zeroing the reserved
// bytes.
func (e *Entry) Put(b []byte) {
	le := binary.LittleEndian
	_ = b[SQEntrySz-1]
	b[0], b[1] = byte(e.Op), e.Flags
	le.PutUint16(b[2:], e.Group)
	le.PutUint32(b[4:], e.Reg)
	le.PutUint64(b[8:], e.UserData)
	le.PutUint64(b[16:], e.Aux)
	le.PutUint64(b[24:], uint64(e.Offset))
	le.PutUint32(b[32:], e.Len)
	le.PutUint32(b[36:], e.Events)
	le.PutUint32(b[40:], e.ArenaOff)
	le.PutUint32(b[44:], e.ArenaLen)
	clear(b[48:SQEntrySz])
}

// ParseEntry reads and checks one submission: known operation and flags,
// reserved bytes zero, user data clear of the reserved bits, and arena
// ranges inside the arena. Registration numbers and buffer indices are
// the caller's to check against its table.
func ParseEntry(b []byte, e *Entry) error {
	if len(b) < SQEntrySz {
		return fmt.Errorf("%w: %d bytes, want %d", ErrEntry, len(b), SQEntrySz)
	}
	le := binary.LittleEndian
	*e = Entry{
		Op: Op(b[0]), Flags: b[1], Group: le.Uint16(b[2:]), Reg: le.Uint32(b[4:]),
		UserData: le.Uint64(b[8:]), Aux: le.Uint64(b[16:]), Offset: int64(le.Uint64(b[24:])),
		Len: le.Uint32(b[32:]), Events: le.Uint32(b[36:]), ArenaOff: le.Uint32(b[40:]), ArenaLen: le.Uint32(b[44:]),
	}
	switch {
	case e.Op >= opLimit:
		return fmt.Errorf("%w: unknown operation %d", ErrEntry, b[0])
	case e.Flags&^flagsKnown != 0:
		return fmt.Errorf("%w: %s with unknown flags %#x", ErrEntry, e.Op, e.Flags)
	case e.UserData&UserDataReserved != 0:
		return fmt.Errorf("%w: %s user data %#x has reserved bits", ErrEntry, e.Op, e.UserData)
	case uint64(e.ArenaOff)+uint64(e.ArenaLen) > ArenaSize:
		return fmt.Errorf("%w: %s arena range %d+%d outside the arena", ErrEntry, e.Op, e.ArenaOff, e.ArenaLen)
	case e.Op == OpPoll && e.Events&^(pollIn|pollOut) != 0:
		return fmt.Errorf("%w: POLL events %#x", ErrEntry, e.Events)
	case e.Op == OpProvide && e.Aux >= BufCount:
		return fmt.Errorf("%w: PROVIDE buffer %d of %d", ErrEntry, e.Aux, BufCount)
	case (e.Op == OpRead || e.Op == OpProvide) && e.Group != BufGroup:
		return fmt.Errorf("%w: %s names buffer group %d, the plane has %d", ErrEntry, e.Op, e.Group, BufGroup)
	case e.Op == OpRead && e.Flags&FlagProvided == 0:
		return fmt.Errorf("%w: READ without FlagProvided (reads complete into the plane's buffers)", ErrEntry)
	case e.Op == OpConnect && (e.ArenaLen < 2 || e.ArenaLen > 128):
		return fmt.Errorf("%w: CONNECT address of %d bytes", ErrEntry, e.ArenaLen)
	}
	for _, c := range b[48:SQEntrySz] {
		if c != 0 {
			return fmt.Errorf("%w: %s reserved bytes not zero", ErrEntry, e.Op)
		}
	}
	return nil
}

const (
	pollIn  = 0x1
	pollOut = 0x4
)

// Put writes r into b (at least CQEntrySz bytes).
func (r *Result) Put(b []byte) {
	le := binary.LittleEndian
	_ = b[CQEntrySz-1]
	le.PutUint64(b[0:], r.UserData)
	le.PutUint32(b[8:], uint32(r.Res))
	le.PutUint32(b[12:], r.Flags)
	le.PutUint16(b[16:], r.Group)
	le.PutUint16(b[18:], r.Buffer)
	clear(b[20:CQEntrySz])
}

// ParseResult reads and checks one completion: known flags, a buffer index
// inside the plane, reserved bytes zero.
func ParseResult(b []byte, r *Result) error {
	if len(b) < CQEntrySz {
		return fmt.Errorf("%w: result of %d bytes, want %d", ErrEntry, len(b), CQEntrySz)
	}
	le := binary.LittleEndian
	*r = Result{UserData: le.Uint64(b), Res: int32(le.Uint32(b[8:])), Flags: le.Uint32(b[12:]),
		Group: le.Uint16(b[16:]), Buffer: le.Uint16(b[18:])}
	switch {
	case r.Flags&^resKnown != 0:
		return fmt.Errorf("%w: result flags %#x", ErrEntry, r.Flags)
	case r.Flags&ResBuffer != 0 && (r.Buffer >= BufCount || r.Group != BufGroup):
		return fmt.Errorf("%w: result names buffer %d of group %d", ErrEntry, r.Buffer, r.Group)
	case r.Flags&ResBuffer != 0 && r.Res > BufSize:
		return fmt.Errorf("%w: %d bytes in a buffer of %d", ErrEntry, r.Res, BufSize)
	}
	for _, c := range b[20:CQEntrySz] {
		if c != 0 {
			return fmt.Errorf("%w: result reserved bytes not zero", ErrEntry)
		}
	}
	return nil
}
