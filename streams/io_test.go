package streams

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
)

// A server written with Go's io idioms: bufio.Scanner over IOReader, io.Copy
// and fmt.Fprintf into IOWriter. Its read loop ends with io.EOF, which is a
// clean end, not an error to report.
func TestIOReaderAndIOWriterCarryGoIdioms(t *testing.T) {
	l := testkit.NewLoop(t, "")
	reported := make(chan error, 1)
	l.SetExceptionHandler(func(_ *kernel.Loop, c kernel.ErrorContext) { reported <- c.Err })
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		srv, r, w, err := openServed(co, func(co *kernel.Co, r *Reader, w *Writer) error {
			sc := bufio.NewScanner(r.IOReader(co))
			out := w.IOWriter(co)
			for sc.Scan() {
				if _, err := fmt.Fprintf(out, "%d\n", len(sc.Bytes())); err != nil {
					return err
				}
			}
			if err := sc.Err(); err != nil {
				return err
			}
			return io.EOF // Go's "the peer finished": closes, reports nothing
		})
		if err != nil {
			return struct{}{}, err
		}
		defer srv.Close()
		defer w.Close()
		in := w.IOWriter(co)
		io.WriteString(in, "a\nbb\nccc\n")
		w.WriteEOF()
		var got bytes.Buffer
		if _, err := io.Copy(&got, r.IOReader(co)); err != nil {
			return struct{}{}, err
		}
		assert.Equal(t, "1\n2\n3\n", got.String())
		return struct{}{}, nil
	})
	require.NoError(t, err)
	select {
	case e := <-reported:
		t.Fatalf("io.EOF from the callback was reported: %v", e)
	default:
	}
}

func TestIOReaderMovesMegabytesWithBackPressure(t *testing.T) {
	l := testkit.NewLoop(t, "")
	want := make([]byte, 8<<20)
	rand.Read(want)
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		srv, r, w, err := openServed(co, func(co *kernel.Co, r *Reader, w *Writer) error {
			defer w.Close()
			_, err := io.Copy(w.IOWriter(co), r.IOReader(co))
			return err
		})
		if err != nil {
			return struct{}{}, err
		}
		defer srv.Close()
		writer, err := kernel.CreateTask(co.Loop(), func(co *kernel.Co) (int64, error) {
			n, err := io.Copy(w.IOWriter(co), bytes.NewReader(want))
			if err == nil {
				err = w.WriteEOF()
			}
			return n, err
		})
		if err != nil {
			return struct{}{}, err
		}
		got, err := io.ReadAll(r.IOReader(co))
		if err != nil {
			return struct{}{}, err
		}
		if _, err := writer.Await(co); err != nil {
			return struct{}{}, err
		}
		if !bytes.Equal(got, want) {
			return struct{}{}, errors.New("echo differs")
		}
		return struct{}{}, nil
	})
	require.NoError(t, err)
}

func TestIOReaderReportsTheConnectionsError(t *testing.T) {
	l := testkit.NewLoop(t, "")
	boom := errors.New("broken")
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		r := NewReader(0)
		r.FeedData([]byte("ab"))
		x := r.IOReader(co)
		b := make([]byte, 1)
		n, err := x.Read(b)
		assert.Equal(t, 1, n)
		assert.NoError(t, err)
		n, err = x.Read(nil)
		assert.Zero(t, n)
		assert.NoError(t, err)
		r.SetException(boom)
		_, err = x.Read(b)
		assert.ErrorIs(t, err, boom)
		return struct{}{}, nil
	})
	require.NoError(t, err)
}
