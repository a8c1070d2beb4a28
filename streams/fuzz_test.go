package streams

import (
	"bytes"
	"errors"
	"testing"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
)

type outcome struct {
	kind string // "ok", "overrun", "incomplete"
	data string
}

// modelReaduntil is what repeated Readuntil calls return when the whole
// stream is buffered before the first call: a sequence of separator-ended
// chunks, ended by an overrun or by the unterminated rest at EOF.
func modelReaduntil(data, sep []byte, limit int) []outcome {
	var out []outcome
	for {
		if len(data) >= len(sep) {
			if i := bytes.Index(data, sep); i >= 0 {
				if i > limit {
					return append(out, outcome{kind: "overrun"})
				}
				out = append(out, outcome{"ok", string(data[:i+len(sep)])})
				data = data[i+len(sep):]
				continue
			}
			if len(data)+1-len(sep) > limit {
				return append(out, outcome{kind: "overrun"})
			}
		}
		return append(out, outcome{"incomplete", string(data)})
	}
}

// FuzzReaduntil feeds a stream in chunks of a fuzzed size while a reader
// calls Readuntil until it fails, and checks the outcomes against the
// whole-buffer model. Which outcome each call has must not depend on how
// the bytes were chunked: a separator within the limit is always found, and
// one beyond it (or none) always overruns, however the data arrives.
func FuzzReaduntil(f *testing.F) {
	f.Add([]byte("a\nbb\n\nccc"), []byte("\n"), uint8(4), uint8(1))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"), []byte("\r\n\r\n"), uint8(40), uint8(3))
	f.Add([]byte("aaaaaaaaaaaaaaaa\n"), []byte("\n"), uint8(5), uint8(2))
	f.Add([]byte("abababab"), []byte("bab"), uint8(3), uint8(1))
	f.Add([]byte(""), []byte("x"), uint8(0), uint8(0))
	f.Add([]byte("xxEND"), []byte("END"), uint8(2), uint8(7))
	f.Fuzz(func(t *testing.T, data, sep []byte, limit, chunk uint8) {
		if len(sep) == 0 {
			return
		}
		sep = sep[:min(len(sep), 8)]
		data = data[:min(len(data), 4096)]
		lim := int(limit)%64 + 1
		size := int(chunk)%16 + 1
		want := modelReaduntil(data, sep, lim)

		l := testkit.NewLoop(t, "")
		r := NewReader(lim)
		var chunks [][]byte
		for rest := data; len(rest) > 0; rest = rest[min(size, len(rest)):] {
			chunks = append(chunks, rest[:min(size, len(rest))])
		}
		feedLater(l, r, chunks, true)
		got, err := testkit.Run(t, l, func(co *kernel.Co) ([]outcome, error) {
			var got []outcome
			for {
				b, err := r.Readuntil(co, sep)
				var over *LimitOverrunError
				var inc *IncompleteReadError
				switch {
				case err == nil:
					got = append(got, outcome{"ok", string(b)})
					continue
				case errors.As(err, &over):
					if over.Consumed > r.Buffered() {
						t.Errorf("overrun consumed %d of %d buffered bytes", over.Consumed, r.Buffered())
					}
					return append(got, outcome{kind: "overrun"}), nil
				case errors.As(err, &inc):
					if r.Buffered() != 0 {
						t.Errorf("incomplete read left %d bytes", r.Buffered())
					}
					return append(got, outcome{"incomplete", string(inc.Partial)}), nil
				}
				return got, err
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("sep %q limit %d chunk %d: got %q, want %q", sep, lim, size, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("sep %q limit %d chunk %d: outcome %d: got %q, want %q", sep, lim, size, i, got[i], want[i])
			}
		}
	})
}
