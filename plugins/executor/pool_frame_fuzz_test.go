package executor

import (
	"bytes"
	"testing"
)

// FuzzWorkerFrames feeds the worker channel's frame reader (the assembler
// both ends read packets with) arbitrary packets: each input is a run of
// packets, each a 3-byte little-endian length (its length as the socket
// would report it, which may exceed what arrived: a truncated packet) and
// up to that many bytes. A bad packet is an error, never a panic or a
// message over the limit; a message that completes, split again into
// packets, reassembles to the same bytes.
func FuzzWorkerFrames(f *testing.F) {
	seed := func(kind uint8, seq uint32, msg []byte) []byte {
		var in []byte
		buf := make([]byte, maxPacket)
		_ = packets(buf, kind, seq, msg, func(p []byte) error {
			in = append(in, byte(len(p)), byte(len(p)>>8), byte(len(p)>>16))
			in = append(in, p...)
			return nil
		})
		return in
	}
	f.Add(seed(kindAnswer, 7, []byte("hello")), uint32(7))
	f.Add(seed(kindAnswer, 7, bytes.Repeat([]byte{1}, maxPayload+10)), uint32(7))
	f.Add(seed(kindCall, 7, nil), uint32(7))
	f.Add(seed(kindAnswer, 8, []byte("x")), uint32(7))
	f.Add([]byte{3, 0, 0, 2, 0, 0}, uint32(0))
	f.Add([]byte{0xff, 0xff, 0x01, 2, 0, 0, 0, 7, 0, 0, 0}, uint32(7))
	f.Fuzz(func(t *testing.T, in []byte, want uint32) {
		var a assembler
		a.reset(kindAnswer)
		pkt := make([]byte, maxPacket)
		for len(in) >= 3 {
			n := int(in[0]) | int(in[1])<<8 | int(in[2])<<16
			in = in[3:]
			got := copy(pkt, in[:min(n, len(in))])
			in = in[min(n, len(in)):]
			reported := n
			if got < n && n <= maxPacket {
				reported = got // the socket reports what arrived unless truncated
			}
			done, err := a.add(pkt[:max(got, 0)], reported, want, false)
			if err != nil {
				return
			}
			if len(a.msg) > maxMessage {
				t.Fatalf("a %d-byte message, over the limit", len(a.msg))
			}
			if !done {
				continue
			}
			msg := bytes.Clone(a.msg)
			var b assembler
			b.reset(kindAnswer)
			var fin bool
			_ = packets(make([]byte, maxPacket), kindAnswer, want, msg, func(p []byte) error {
				if fin {
					t.Fatal("packets went on after the message's last")
				}
				var err error
				if fin, err = b.add(p, len(p), want, false); err != nil {
					t.Fatalf("a well-formed packet refused: %v", err)
				}
				return nil
			})
			if !fin || !bytes.Equal(b.msg, msg) {
				t.Fatalf("message of %d bytes did not survive packets and reassembly", len(msg))
			}
			a.reset(kindAnswer)
		}
	})
}
