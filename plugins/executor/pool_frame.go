package executor

import (
	"errors"
	"fmt"
)

// The worker channel's framing. Each worker has a SOCK_SEQPACKET socket of
// its own to the host (the worker channel, pool_chan.go): the host writes a
// call, the worker answers it, one at a time. The socket keeps each packet's
// boundaries, so a message is one packet when it fits and a run of packets
// when it does not; every packet starts with the same 8-byte header
// (little-endian):
//
//	0  u8   kind: 1 a call (host -> worker), 2 an answer (worker -> host)
//	1  u8   flags: bit 0 more packets of this message follow
//	2  u16  reserved, 0
//	4  u32  the call's sequence number, which its answer repeats
//
// then up to maxPacket-packetHeaderLen bytes of the message. A message is at
// most maxMessage bytes: anything larger travels through shared memory
// (pool_wire.go), and with shared memory turned off it is refused.
//
// Both ends are this program, so a packet that breaks these rules is a bug
// or a worker that went astray; the host treats it as the worker's failure
// (the call fails saying what was wrong, the worker is replaced) and never
// as data.
const (
	kindCall   = 1
	kindAnswer = 2
	flagMore   = 1

	packetHeaderLen = 8
	maxPacket       = 64 << 10
	maxPayload      = maxPacket - packetHeaderLen
	maxMessage      = 64 << 20
)

// errMalformed is wrapped by the error of a packet that breaks the
// channel's rules.
var errMalformed = errors.New("malformed packet on the worker channel")

// putPacketHeader writes a packet header to h.
func putPacketHeader(h []byte, kind uint8, more bool, seq uint32) {
	h[0] = kind
	h[1] = 0
	if more {
		h[1] = flagMore
	}
	h[2], h[3] = 0, 0
	le.PutUint32(h[4:], seq)
}

// packets splits msg into the packets that carry it, writing each into buf
// (at least maxPacket bytes) in turn: emit gets one packet at a time, in a
// buffer it must not keep. It is how both ends send, and how the fuzz test
// builds well-formed input.
func packets(buf []byte, kind uint8, seq uint32, msg []byte, emit func([]byte) error) error {
	if len(buf) < maxPacket {
		return fmt.Errorf("packet buffer of %d bytes", len(buf))
	}
	for first := true; first || len(msg) > 0; first = false {
		n := min(len(msg), maxPayload)
		putPacketHeader(buf, kind, n < len(msg), seq)
		copy(buf[packetHeaderLen:], msg[:n])
		if err := emit(buf[:packetHeaderLen+n]); err != nil {
			return err
		}
		msg = msg[n:]
	}
	return nil
}

// assembler puts a message back together from its packets. It keeps its
// buffer between messages (a call's worth of allocation is paid once per
// worker, not once per call), up to retainShm.
type assembler struct {
	kind    uint8 // the kind of message expected
	seq     uint32
	started bool
	msg     []byte
}

// reset prepares a for the next message of kind.
func (a *assembler) reset(kind uint8) {
	a.kind, a.started = kind, false
	if cap(a.msg) > retainShm {
		a.msg = nil
	}
	a.msg = a.msg[:0]
}

// add takes one packet as received (n is its length as the socket
// reported it, which is longer than pkt when the packet did not fit the
// buffer) and reports whether the message is complete. The message's
// sequence number must be want, unless anySeq (a worker reading the next
// call). The message is a.msg, valid until the next reset.
func (a *assembler) add(pkt []byte, n int, want uint32, anySeq bool) (done bool, err error) {
	switch {
	case n > len(pkt) || n > maxPacket:
		return false, fmt.Errorf("%w: a packet of %d bytes, over the %d-byte limit", errMalformed, n, maxPacket)
	case n < packetHeaderLen:
		return false, fmt.Errorf("%w: a packet of %d bytes, shorter than its header", errMalformed, n)
	}
	pkt = pkt[:n]
	kind, flags, seq := pkt[0], pkt[1], le.Uint32(pkt[4:])
	switch {
	case kind != a.kind:
		return false, fmt.Errorf("%w: kind %d where %d was expected", errMalformed, kind, a.kind)
	case flags&^flagMore != 0 || pkt[2] != 0 || pkt[3] != 0:
		return false, fmt.Errorf("%w: unknown flags or reserved bits in % x", errMalformed, pkt[:4])
	case a.started && seq != a.seq:
		return false, fmt.Errorf("%w: call %d's message went on with a packet of call %d", errMalformed, a.seq, seq)
	case !a.started && !anySeq && seq != want:
		return false, fmt.Errorf("%w: the answer to call %d where call %d's was expected", errMalformed, seq, want)
	case flags&flagMore != 0 && n != maxPacket:
		return false, fmt.Errorf("%w: a %d-byte packet with more to follow (only full packets may be)", errMalformed, n)
	case len(a.msg)+n-packetHeaderLen > maxMessage:
		return false, fmt.Errorf("%w: a message over the %d-byte limit", errMalformed, maxMessage)
	}
	a.started, a.seq = true, seq
	a.msg = append(a.msg, pkt[packetHeaderLen:]...)
	return flags&flagMore == 0, nil
}
