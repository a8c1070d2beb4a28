package streams

import (
	"io"
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
)

// benchLimit bounds a benchmark's coroutine far above any -benchtime, where
// testkit.Limit bounds a test's.
const benchLimit = time.Hour

// BenchmarkReadlineBuffered measures the Reader alone: one 64-byte line fed
// and read back per op, no I/O.
func BenchmarkReadlineBuffered(b *testing.B) {
	l := testkit.NewLoop(b, "")
	r := NewReader(0)
	line := []byte("0123456789012345678901234567890123456789012345678901234567890\n")
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	_, err := testkit.Go(l, benchLimit, func(co *kernel.Co) (struct{}, error) {
		for b.Loop() {
			r.FeedData(line)
			if _, err := r.Readline(co); err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkEchoLine is one request/response round trip of a 64-byte line
// through StartServer and OpenConnection over TCP loopback.
func BenchmarkEchoLine(b *testing.B) {
	l := testkit.NewLoop(b, "")
	line := []byte("0123456789012345678901234567890123456789012345678901234567890\n")
	b.ReportAllocs()
	_, err := testkit.Go(l, benchLimit, func(co *kernel.Co) (struct{}, error) {
		srv, r, w, err := openServed(co, echoLines)
		if err != nil {
			return struct{}{}, err
		}
		defer srv.Close()
		defer w.Close()
		for b.Loop() {
			if err := w.Write(line); err != nil {
				return struct{}{}, err
			}
			if _, err := r.Readline(co); err != nil {
				return struct{}{}, err
			}
		}
		w.WriteEOF()
		if _, err := r.Read(co, -1); err != nil && err != io.EOF {
			return struct{}{}, err
		}
		return struct{}{}, nil
	})
	if err != nil {
		b.Fatal(err)
	}
}
