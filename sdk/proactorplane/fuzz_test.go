package proactorplane

import "testing"

// The parsers face bytes the other process wrote; none may panic, and
// whatever they accept must encode back to the same bytes.

func FuzzParseEntry(f *testing.F) {
	var b [SQEntrySz]byte
	(&Entry{Op: OpWrite, Reg: 3, UserData: 9, ArenaOff: 256, ArenaLen: 64}).Put(b[:])
	f.Add(b[:])
	(&Entry{Op: OpRead, Flags: FlagMultishot | FlagProvided, Group: BufGroup}).Put(b[:])
	f.Add(b[:])
	f.Fuzz(func(t *testing.T, in []byte) {
		var e Entry
		if ParseEntry(in, &e) != nil {
			return
		}
		var out [SQEntrySz]byte
		e.Put(out[:])
		if string(out[:]) != string(in[:SQEntrySz]) {
			t.Fatalf("accepted %x, re-encoded %x", in[:SQEntrySz], out)
		}
	})
}

func FuzzParseResult(f *testing.F) {
	var b [CQEntrySz]byte
	(&Result{UserData: 1, Res: 100, Flags: ResMore | ResBuffer, Group: BufGroup, Buffer: 3}).Put(b[:])
	f.Add(b[:])
	f.Fuzz(func(t *testing.T, in []byte) {
		var r Result
		if ParseResult(in, &r) != nil {
			return
		}
		var out [CQEntrySz]byte
		r.Put(out[:])
		if string(out[:]) != string(in[:CQEntrySz]) {
			t.Fatalf("accepted %x, re-encoded %x", in[:CQEntrySz], out)
		}
	})
}

func FuzzParseFrame(f *testing.F) {
	var b [FrameSize]byte
	(&Frame{Kind: FrameHello, NFDs: 3, A: Size}).Put(b[:])
	f.Add(b[:])
	(&Frame{Kind: FrameWelcome, A: 42}).Put(b[:])
	f.Add(b[:])
	f.Fuzz(func(t *testing.T, in []byte) {
		var fr Frame
		if ParseFrame(in, &fr) != nil {
			return
		}
		var out [FrameSize]byte
		fr.Put(out[:])
		if string(out[:]) != string(in) {
			t.Fatalf("accepted %x, re-encoded %x", in, out)
		}
	})
}

func FuzzCheckHeader(f *testing.F) {
	h := make([]byte, HeaderSize)
	WriteHeader(h)
	f.Add(h[:128])
	f.Fuzz(func(t *testing.T, in []byte) {
		h := make([]byte, HeaderSize)
		copy(h, in)
		if CheckHeader(h, Size) == nil {
			ref := make([]byte, HeaderSize)
			WriteHeader(ref)
			if string(ref[:128]) != string(h[:128]) {
				t.Fatalf("accepted a header that differs from version 1's: %x", h[:128])
			}
		}
	})
}
