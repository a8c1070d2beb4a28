package executor

import (
	"bytes"
	"testing"
)

// FuzzEnvelope feeds the worker's envelope decoder and the host's answer
// decoder arbitrary bytes: a bad envelope or result is an error, never a
// panic, and an envelope that decodes re-encodes to the same bytes.
func FuzzEnvelope(f *testing.F) {
	e := envelope{flags: flagArgShm, name: "f", hostPID: 1, argFD: 3, resFD: 4, threshold: 1 << 18, argLen: 9, deadline: 42}
	f.Add(appendEnvelope(nil, &e))
	e = envelope{name: "inline", argFD: -1, resFD: -1}
	f.Add(append(appendEnvelope(nil, &e), "arg"...))
	f.Add(make([]byte, resHeaderLen))
	f.Add([]byte{flagResShm, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0})
	f.Add(append(appendAnswer(nil, 0, statusFailed, 0), "boom"...))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeAnswer(b)
		got, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		again := append(appendEnvelope(nil, &got), got.inline...)
		if !bytes.Equal(again, b) {
			t.Fatalf("envelope %x decodes to %+v, which encodes to %x", b, got, again)
		}
	})
}
