package dataplane

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/sdk"
	"golang.org/x/sys/unix"
)

// Independent encoders, written from WIRE.md rather than shared with the
// production code, so that a mistake in one shows up against the other.

type reqRec struct {
	tok      sdk.Token
	op       uint8
	interest sdk.Events
}

type evRec struct {
	tok    sdk.Token
	events sdk.Events
	errno  uint32
}

func encHeader(typ uint8, flags uint16, count, seq uint32) []byte {
	b := make([]byte, 16)
	copy(b, "LKDP")
	b[4] = 1
	b[5] = typ
	le.PutUint16(b[6:], flags)
	le.PutUint32(b[8:], count)
	le.PutUint32(b[12:], seq)
	return b
}

func encRequest(seq uint32, flags uint16, timeout time.Duration, maxEvents uint32, recs ...reqRec) []byte {
	b := encHeader(0x02, flags, uint32(len(recs)), seq)
	b = le.AppendUint64(b, uint64(timeout))
	b = le.AppendUint32(b, maxEvents)
	b = le.AppendUint32(b, 0)
	for _, r := range recs {
		b = le.AppendUint64(b, uint64(r.tok))
		b = append(b, r.op, 0, 0, 0)
		b = le.AppendUint32(b, uint32(r.interest))
	}
	return b
}

func encEvents(seq uint32, flags uint16, recs ...evRec) []byte {
	b := encHeader(0x82, flags, uint32(len(recs)), seq)
	for _, r := range recs {
		b = le.AppendUint64(b, uint64(r.tok))
		b = le.AppendUint32(b, uint32(r.events))
		b = le.AppendUint32(b, r.errno)
	}
	return b
}

func encHelloReply(name string, maxFDs, capFlags uint32) []byte {
	return encHelloReplySeq(0, name, maxFDs, capFlags)
}

func encHelloReplySeq(seq uint32, name string, maxFDs, capFlags uint32) []byte {
	b := encHeader(0x81, 0, uint32(len(name)), seq)
	b = le.AppendUint32(b, maxFDs)
	b = le.AppendUint32(b, capFlags)
	b = le.AppendUint64(b, 0)
	return append(b, name...)
}

func encError(seq uint32, errno uint32, msg string) []byte {
	b := encHeader(0x83, 0, uint32(len(msg)), seq)
	b = le.AppendUint32(b, errno)
	b = le.AppendUint32(b, 0)
	return append(b, msg...)
}

func requestSeeds() [][]byte {
	return [][]byte{
		encHeader(0x01, 0, 0, 0),
		encHeader(0x03, 0, 0, 0),
		encHeader(0x04, 0, 0, 0),
		encRequest(1, 0, -1, 128),
		encRequest(2, 0, 0, 4, reqRec{sdk.MakeToken(1, 1), opRegister, sdk.Read}),
		encRequest(3, fMore, time.Second, 64,
			reqRec{sdk.MakeToken(1, 1), opModify, sdk.Read | sdk.Write},
			reqRec{sdk.MakeToken(2, 7), opUnregister, 0}),
		encRequest(4, 0, 0, 1, reqRec{sdk.MakeToken(3, 1), 9, 0}),
		encRequest(5, 0, 0, 1, reqRec{reservedToken, opModify, 0}),
		encRequest(6, 0, 0, 70000),
		encHeader(0x02, 0, 0xffffffff, 0),
		[]byte("LKDP"),
		{},
	}
}

func replySeeds() [][]byte {
	return [][]byte{
		encHelloReply("epoll", 0, capRegularFiles),
		encHelloReply("poll", 1024, 0),
		encError(1, uint32(unix.EIO), "boom"),
		encError(1, 0, ""),
		encEvents(1, 0),
		encEvents(2, fWoken, evRec{sdk.MakeToken(1, 1), sdk.Read, 0}),
		encEvents(3, 0, evRec{sdk.MakeToken(1, 1), 0, uint32(unix.EPERM)},
			evRec{sdk.MakeToken(2, 1), sdk.Write | sdk.Hangup, 0}),
		encEvents(4, 0, evRec{sdk.MakeToken(1, 1), 1 << 7, 0}),
		encEvents(5, 0, evRec{sdk.MakeToken(1, 1), sdk.Read, 5}),
		encHeader(0x82, 0, 0xffffffff, 0),
		encHeader(0x99, 0, 0, 0),
		bytes.Repeat([]byte{0xff}, 40),
	}
}

// FuzzDecodeRequest feeds arbitrary bytes (and descriptor counts) to the
// plugin-side decoder. It must never panic; whatever it accepts must be
// exactly what the independent encoder produces for the decoded values, so
// no byte of an accepted frame is ignored.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range requestSeeds() {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
		f.Add(s, uint8(128)) // out of descriptors: none came
	}
	f.Fuzz(func(t *testing.T, b []byte, nfds uint8) {
		// The high bit of nfds says the plugin ran out of
		// descriptors (MSG_CTRUNC): fewer may have come than registered.
		short := nfds >= 128
		nfds &= 127
		fr, err := decodeHostFrameFDs(b, int(nfds), short)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		var again []byte
		switch fr.typ {
		case tHello, tWake, tGoodbye:
			again = encHeader(fr.typ, 0, 0, fr.seq)
		case tRequest:
			recs := make([]reqRec, fr.count)
			regs := 0
			for i := range recs {
				recs[i] = reqRec{recToken(fr.recs, i), recOp(fr.recs, i), recInterest(fr.recs, i)}
				if recs[i].op == opRegister {
					regs++
				}
			}
			if (regs != int(nfds) && !(short && int(nfds) < regs)) || regs != fr.registers {
				t.Fatalf("accepted %d registrations with %d descriptors (counted %d)", regs, nfds, fr.registers)
			}
			again = encRequest(fr.seq, fr.flags, fr.timeout, fr.maxEvents, recs...)
		default:
			t.Fatalf("accepted type %#x", fr.typ)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted frame re-encodes differently:\n got %x\nwant %x", again, b)
		}
	})
}

// FuzzDecodeReply does the same for the host-side decoder.
func FuzzDecodeReply(f *testing.F) {
	for _, s := range replySeeds() {
		f.Add(s, uint8(0), uint16(8))
	}
	f.Add(encEvents(1, 0, evRec{1, sdk.Read, 0}, evRec{2, sdk.Read, 0}), uint8(0), uint16(1))
	f.Add(encEvents(1, 0), uint8(1), uint16(1))
	f.Fuzz(func(t *testing.T, b []byte, nfds uint8, maxEvents uint16) {
		fr, err := decodePluginFrame(b, int(nfds), int(maxEvents))
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		if nfds != 0 {
			t.Fatalf("accepted a frame with %d descriptors", nfds)
		}
		var again []byte
		switch fr.typ {
		case tHelloReply:
			again = encHelloReplySeq(fr.seq, string(fr.name), fr.maxFDs, fr.capFlags)
		case tError:
			again = encError(fr.seq, fr.errno, string(fr.msg))
		case tEvents:
			recs := make([]evRec, fr.count)
			ready := 0
			for i := range recs {
				recs[i] = evRec{recToken(fr.recs, i), recEvents(fr.recs, i), recErrno(fr.recs, i)}
				if recs[i].errno == 0 {
					ready++
				}
			}
			if ready > int(maxEvents) {
				t.Fatalf("accepted %d ready records for %d slots", ready, maxEvents)
			}
			again = encEvents(fr.seq, fr.flags, recs...)
		default:
			t.Fatalf("accepted type %#x", fr.typ)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted frame re-encodes differently:\n got %x\nwant %x", again, b)
		}
	})
}

// FuzzParseRights checks the control-message walker never reads past its
// buffer or panics, whatever the kernel (or a bug) put there.
func FuzzParseRights(f *testing.F) {
	oob := make([]byte, oobSpace)
	f.Add(append([]byte(nil), putRights(oob, []int{3, 4, 5})...))
	f.Add([]byte{})
	f.Add(make([]byte, 7))
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Control buffers are 8-byte aligned in real use; copy to keep that.
		buf := make([]byte, len(b), len(b)+8)
		copy(buf, b)
		fds, err := parseRights(buf, nil)
		if len(fds) > len(b)/4 {
			t.Fatalf("%d descriptors from %d bytes (err %v)", len(fds), len(b), err)
		}
	})
}

func TestPutRightsRoundTrip(t *testing.T) {
	oob := make([]byte, oobSpace)
	want := make([]int, maxFDsPerFrame)
	for i := range want {
		want[i] = 1000 + i
	}
	got, err := parseRights(putRights(oob, want), nil)
	if err != nil || len(got) != len(want) || got[0] != 1000 || got[len(got)-1] != 1000+maxFDsPerFrame-1 {
		t.Fatalf("parseRights(putRights(%d fds)) = %d fds, %v", len(want), len(got), err)
	}
	if putRights(oob, nil) != nil {
		t.Fatal("putRights with no descriptors must send no control data")
	}
}

func TestDecodeRejects(t *testing.T) {
	cases := []struct {
		name string
		b    []byte
		nfds int
	}{
		{"short", []byte("LKDP\x01"), 0},
		{"magic", append([]byte("XKDP"), encHeader(3, 0, 0, 0)[4:]...), 0},
		{"version", func() []byte { b := encHeader(3, 0, 0, 0); b[4] = 2; return b }(), 0},
		{"wake with fds", encHeader(3, 0, 0, 0), 1},
		{"wake with body", append(encHeader(3, 0, 0, 0), 0), 0},
		{"register without fd", encRequest(1, 0, 0, 1, reqRec{1, opRegister, sdk.Read}), 0},
		{"fd without register", encRequest(1, 0, 0, 1, reqRec{1, opModify, sdk.Read}), 1},
		{"interest error bit", encRequest(1, 0, 0, 1, reqRec{1, opModify, sdk.Error}), 0},
		{"unregister interest", encRequest(1, 0, 0, 1, reqRec{1, opUnregister, sdk.Read}), 0},
		{"count mismatch", encRequest(1, 0, 0, 1, reqRec{1, opModify, sdk.Read})[:40], 0},
		{"unknown flag", encRequest(1, 2, 0, 1), 0},
		{"reply type", encEvents(1, 0), 0},
	}
	for _, c := range cases {
		if _, err := decodeHostFrame(c.b, c.nfds); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: decodeHostFrame = %v, want ErrProtocol", c.name, err)
		}
	}
	replies := []struct {
		name string
		b    []byte
		max  int
	}{
		{"too many ready", encEvents(1, 0, evRec{1, sdk.Read, 0}, evRec{2, sdk.Read, 0}), 1},
		{"empty events", encEvents(1, 0, evRec{1, 0, 0}), 4},
		{"error with events", encEvents(1, 0, evRec{1, sdk.Read, 1}), 4},
		{"reserved token", encEvents(1, 0, evRec{reservedToken, sdk.Read, 0}), 4},
		{"name too long", encHelloReply(string(bytes.Repeat([]byte("x"), 65)), 0, 0), 0},
		{"unknown cap", encHelloReply("x", 0, 2), 0},
		{"errno zero", encError(1, 0, "x"), 0},
		{"request type", encRequest(1, 0, 0, 0), 0},
	}
	for _, c := range replies {
		if _, err := decodePluginFrame(c.b, 0, c.max); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: decodePluginFrame = %v, want ErrProtocol", c.name, err)
		}
	}
	// Events records above 2 are accepted only if ready count fits; error
	// records do not count against max_events.
	b := encEvents(1, 0, evRec{1, 0, uint32(unix.EPERM)}, evRec{2, sdk.Read, 0})
	if _, err := decodePluginFrame(b, 0, 1); err != nil {
		t.Fatalf("error record counted against max_events: %v", err)
	}
}
