package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/loopkernel/loopkernel/sdk"
)

// The wire format is specified in WIRE.md; the constants below are its
// numbers and must change only together with that file and Version.

// Version is the data-plane protocol version carried in every frame header.
const Version = 1

// magic is "LKDP" read as a little-endian uint32.
const magic = uint32('L') | uint32('K')<<8 | uint32('D')<<16 | uint32('P')<<24

// Frame sizes and limits.
const (
	headerLen  = 16
	recordLen  = 16
	reqBodyLen = 16 // timeout + max_events + reserved, after the header
	helloBody  = 16 // max_fds + cap_flags + reserved, after the header
	errBody    = 8  // errno + reserved, after the header

	// maxFrame is the largest frame either side sends or accepts.
	maxFrame = 65536
	// maxFDsPerFrame is Linux's SCM_MAX_FD: the most descriptors one
	// sendmsg can carry. Larger batches are split over several frames.
	maxFDsPerFrame = 253
	// maxRequestRecords and maxReplyRecords follow from maxFrame.
	maxRequestRecords = (maxFrame - headerLen - reqBodyLen) / recordLen
	maxReplyRecords   = (maxFrame - headerLen) / recordLen
	maxNameLen        = 64
	maxErrMsgLen      = 1024
)

// Frame types. Host-to-plugin types are below 0x80, replies at or above.
const (
	tHello      uint8 = 0x01
	tRequest    uint8 = 0x02
	tWake       uint8 = 0x03
	tGoodbye    uint8 = 0x04
	tHelloReply uint8 = 0x81
	tEvents     uint8 = 0x82
	tError      uint8 = 0x83
)

// Header flags.
const (
	// fMore on a request: more request frames of the same batch follow;
	// apply these records but neither wait nor reply yet.
	fMore uint16 = 1 << 0
	// fWoken on an events reply: the wait ended because of a wake frame.
	fWoken uint16 = 1 << 0
)

// Request record operations.
const (
	opRegister   uint8 = 1
	opModify     uint8 = 2
	opUnregister uint8 = 3
)

// Capability flags in the hello reply.
const capRegularFiles uint32 = 1 << 0

// interestMask is what a request may ask for; Error and Hangup are only
// ever reported.
const interestMask = sdk.Read | sdk.Write

// reportMask is what a reply may report.
const reportMask = sdk.Read | sdk.Write | sdk.Error | sdk.Hangup

// reservedToken is the token the plugin uses for its own end of the data
// plane in its real selector; the host never registers it. It is not
// MaxUint64 because back-ends reserve that one for their own wake-up
// (plugins/selector's epoll does).
const reservedToken = sdk.Token(math.MaxUint64 - 1)

var (
	// ErrProtocol: the peer sent a frame that breaks WIRE.md. The connection
	// cannot be trusted any more; the supervisor kills and restarts the plugin.
	ErrProtocol = errors.New("dataplane: protocol violation")
	// ErrPeerGone: the other end closed or reset the data-plane socket.
	ErrPeerGone = errors.New("dataplane: peer gone")
)

var le = binary.LittleEndian

// header is the fixed 16-byte prefix of every frame.
type header struct {
	typ   uint8
	flags uint16
	count uint32
	seq   uint32
}

func putHeader(b []byte, h header) {
	le.PutUint32(b[0:], magic)
	b[4] = Version
	b[5] = h.typ
	le.PutUint16(b[6:], h.flags)
	le.PutUint32(b[8:], h.count)
	le.PutUint32(b[12:], h.seq)
}

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

func parseHeader(b []byte) (header, error) {
	if len(b) < headerLen {
		return header{}, protoErr("frame of %d bytes is shorter than the %d-byte header", len(b), headerLen)
	}
	if m := le.Uint32(b[0:]); m != magic {
		return header{}, protoErr("bad magic %#08x", m)
	}
	if v := b[4]; v != Version {
		return header{}, protoErr("unsupported version %d (want %d)", v, Version)
	}
	return header{typ: b[5], flags: le.Uint16(b[6:]), count: le.Uint32(b[8:]), seq: le.Uint32(b[12:])}, nil
}

// hostFrame is a decoded host-to-plugin frame. recs aliases the receive
// buffer; decodeHostFrame has already validated every record in it.
type hostFrame struct {
	header
	timeout   time.Duration // request: <0 waits indefinitely
	maxEvents uint32        // request
	recs      []byte        // request: count records of recordLen bytes
	registers int           // request: how many records are registrations
}

// request record accessors; i must be < count.
func recToken(recs []byte, i int) sdk.Token   { return sdk.Token(le.Uint64(recs[i*recordLen:])) }
func recOp(recs []byte, i int) uint8          { return recs[i*recordLen+8] }
func recEvents(recs []byte, i int) sdk.Events { return sdk.Events(le.Uint32(recs[i*recordLen+8:])) }
func recInterest(recs []byte, i int) sdk.Events {
	return sdk.Events(le.Uint32(recs[i*recordLen+12:]))
}
func recErrno(recs []byte, i int) uint32 { return le.Uint32(recs[i*recordLen+12:]) }

// decodeHostFrame validates a frame the plugin received. nfds is how many
// descriptors arrived with it: they must match the registrations exactly.
func decodeHostFrame(b []byte, nfds int) (hostFrame, error) {
	return decodeHostFrameFDs(b, nfds, false)
}

// decodeHostFrameFDs is decodeHostFrame; with short, a request may carry
// fewer descriptors than it has REGISTER records: the receiver ran out of
// descriptors (recvmsg set MSG_CTRUNC), so the kernel installed the first
// nfds and dropped the rest, and those registrations fail with EMFILE.
func decodeHostFrameFDs(b []byte, nfds int, short bool) (hostFrame, error) {
	h, err := parseHeader(b)
	if err != nil {
		return hostFrame{}, err
	}
	f := hostFrame{header: h}
	switch h.typ {
	case tHello, tWake, tGoodbye:
		if len(b) != headerLen || h.count != 0 || h.flags != 0 {
			return f, protoErr("type %#02x frame: length %d, count %d, flags %#x; want a bare header", h.typ, len(b), h.count, h.flags)
		}
		if nfds != 0 {
			return f, protoErr("type %#02x frame carried %d descriptors", h.typ, nfds)
		}
		return f, nil
	case tRequest:
	default:
		return f, protoErr("unknown host frame type %#02x", h.typ)
	}
	if h.flags&^fMore != 0 {
		return f, protoErr("request flags %#x", h.flags)
	}
	if h.count > maxRequestRecords {
		return f, protoErr("request with %d records (limit %d)", h.count, maxRequestRecords)
	}
	if want := headerLen + reqBodyLen + int(h.count)*recordLen; len(b) != want {
		return f, protoErr("request of %d bytes with %d records; want %d bytes", len(b), h.count, want)
	}
	f.timeout = time.Duration(int64(le.Uint64(b[16:])))
	f.maxEvents = le.Uint32(b[24:])
	if r := le.Uint32(b[28:]); r != 0 {
		return f, protoErr("request reserved field %#x", r)
	}
	if f.maxEvents > maxReplyRecords {
		return f, protoErr("request max_events %d (limit %d)", f.maxEvents, maxReplyRecords)
	}
	f.recs = b[headerLen+reqBodyLen:]
	for i := 0; i < int(h.count); i++ {
		r := f.recs[i*recordLen : (i+1)*recordLen]
		if r[9] != 0 || r[10] != 0 || r[11] != 0 {
			return f, protoErr("request record %d: reserved bytes set", i)
		}
		tok, op, in := recToken(f.recs, i), r[8], recInterest(f.recs, i)
		if tok == reservedToken {
			return f, protoErr("request record %d uses the reserved token", i)
		}
		switch op {
		case opRegister:
			f.registers++
			fallthrough
		case opModify:
			if in&^interestMask != 0 {
				return f, protoErr("request record %d: interest %v", i, in)
			}
		case opUnregister:
			if in != 0 {
				return f, protoErr("request record %d: unregister with interest %v", i, in)
			}
		default:
			return f, protoErr("request record %d: unknown op %d", i, op)
		}
	}
	if f.registers != nfds && !(short && nfds < f.registers) {
		return f, protoErr("request registers %d descriptors but carried %d", f.registers, nfds)
	}
	if f.registers > maxFDsPerFrame {
		return f, protoErr("request registers %d descriptors (limit %d)", f.registers, maxFDsPerFrame)
	}
	return f, nil
}

// pluginFrame is a decoded plugin-to-host frame. recs and the byte slices
// alias the receive buffer.
type pluginFrame struct {
	header
	recs     []byte // events: count records
	maxFDs   uint32 // hello reply
	capFlags uint32 // hello reply
	name     []byte // hello reply
	errno    uint32 // error
	msg      []byte // error
}

// decodePluginFrame validates a frame the host received. maxEvents bounds
// the readiness records of an events reply (error records come on top).
func decodePluginFrame(b []byte, nfds int, maxEvents int) (pluginFrame, error) {
	h, err := parseHeader(b)
	if err != nil {
		return pluginFrame{}, err
	}
	f := pluginFrame{header: h}
	if nfds != 0 {
		return f, protoErr("plugin frame carried %d descriptors", nfds)
	}
	switch h.typ {
	case tHelloReply:
		if h.flags != 0 || h.count > maxNameLen || len(b) != headerLen+helloBody+int(h.count) {
			return f, protoErr("hello reply: length %d, name length %d, flags %#x", len(b), h.count, h.flags)
		}
		f.maxFDs = le.Uint32(b[16:])
		f.capFlags = le.Uint32(b[20:])
		if f.capFlags&^capRegularFiles != 0 || le.Uint64(b[24:]) != 0 {
			return f, protoErr("hello reply: unknown capability bits %#x or reserved field set", f.capFlags)
		}
		f.name = b[headerLen+helloBody:]
		return f, nil
	case tError:
		if h.flags != 0 || h.count > maxErrMsgLen || len(b) != headerLen+errBody+int(h.count) {
			return f, protoErr("error frame: length %d, message length %d, flags %#x", len(b), h.count, h.flags)
		}
		f.errno = le.Uint32(b[16:])
		if f.errno == 0 || le.Uint32(b[20:]) != 0 {
			return f, protoErr("error frame: errno %d, reserved %#x", f.errno, le.Uint32(b[20:]))
		}
		f.msg = b[headerLen+errBody:]
		return f, nil
	case tEvents:
	default:
		return f, protoErr("unknown plugin frame type %#02x", h.typ)
	}
	if h.flags&^fWoken != 0 {
		return f, protoErr("events flags %#x", h.flags)
	}
	if h.count > maxReplyRecords || len(b) != headerLen+int(h.count)*recordLen {
		return f, protoErr("events reply of %d bytes with %d records", len(b), h.count)
	}
	f.recs = b[headerLen:]
	ready := 0
	for i := 0; i < int(h.count); i++ {
		ev, errno := recEvents(f.recs, i), recErrno(f.recs, i)
		if recToken(f.recs, i) == reservedToken {
			return f, protoErr("events record %d uses the reserved token", i)
		}
		if errno != 0 {
			if ev != 0 {
				return f, protoErr("events record %d: error record with events %v", i, ev)
			}
			continue
		}
		if ev == 0 || ev&^reportMask != 0 {
			return f, protoErr("events record %d: events %v", i, ev)
		}
		ready++
	}
	if ready > maxEvents {
		return f, protoErr("events reply with %d ready records for %d slots", ready, maxEvents)
	}
	return f, nil
}
