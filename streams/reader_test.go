package streams

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
)

// feedLater feeds chunks one per loop iteration, then EOF (if eof), from a
// task of its own, so the reader under test has to wait for each.
func feedLater(l *kernel.Loop, r *Reader, chunks [][]byte, eof bool) {
	kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
		for _, c := range chunks {
			if err := co.Yield(); err != nil {
				return struct{}{}, err
			}
			r.FeedData(c)
		}
		if eof {
			co.Yield()
			r.FeedEOF()
		}
		return struct{}{}, nil
	})
}

func chunksOf(s string, n int) [][]byte {
	var out [][]byte
	for len(s) > 0 {
		k := min(n, len(s))
		out = append(out, []byte(s[:k]))
		s = s[k:]
	}
	return out
}

func TestReadline(t *testing.T) {
	l := testkit.NewLoop(t, "")
	r := NewReader(0)
	feedLater(l, r, chunksOf("first line\nsecond\n\nlast", 3), true)
	lines, err := testkit.Run(t, l, func(co *kernel.Co) ([]string, error) {
		var out []string
		for {
			line, err := r.Readline(co)
			if err == io.EOF {
				return out, nil
			}
			if err != nil {
				return out, err
			}
			out = append(out, string(line))
		}
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"first line\n", "second\n", "\n", "last"}, lines)
	assert.True(t, r.AtEOF())
	r.FeedData([]byte("after EOF"))
	assert.Zero(t, r.Buffered(), "data after EOF is dropped")
}

func TestReadexactly(t *testing.T) {
	l := testkit.NewLoop(t, "")
	r := NewReader(0)
	feedLater(l, r, chunksOf("0123456789", 4), true)
	got, err := testkit.Run(t, l, func(co *kernel.Co) ([][]byte, error) {
		a, err := r.Readexactly(co, 7)
		if err != nil {
			return nil, err
		}
		z, err := r.Readexactly(co, 0)
		if err != nil {
			return nil, err
		}
		b, err := r.Readexactly(co, 5)
		return [][]byte{a, z, b}, err
	})
	var inc *IncompleteReadError
	require.True(t, errors.As(err, &inc), "%v", err)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Equal(t, "789", string(inc.Partial))
	assert.Equal(t, 5, inc.Expected)
	assert.Equal(t, "3 bytes read on a total of 5 expected bytes", inc.Error())
	assert.True(t, r.AtEOF())
	_ = got

	_, err = testkit.Run(t, l, func(co *kernel.Co) ([]byte, error) { return r.Readexactly(co, -1) })
	assert.ErrorIs(t, err, kernel.ErrInvalidArgument)
}

func TestRead(t *testing.T) {
	l := testkit.NewLoop(t, "")
	r := NewReader(4)
	feedLater(l, r, chunksOf("abcdefghij", 6), true)
	got, err := testkit.Run(t, l, func(co *kernel.Co) ([]string, error) {
		var out []string
		b, err := r.Read(co, 2) // waits for the first chunk
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
		b, err = r.Read(co, 100) // what is buffered, no more
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
		b, err = r.Read(co, -1) // to EOF, in limit-sized reads
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
		_, err = r.Read(co, 1)
		if err != io.EOF {
			return out, errors.New("want io.EOF after the end")
		}
		return out, nil
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"ab", "cdef", "ghij"}, got)
}

func TestReaduntilMultiByteSeparatorAcrossChunks(t *testing.T) {
	l := testkit.NewLoop(t, "")
	r := NewReader(0)
	feedLater(l, r, chunksOf("head\r\n\r\nbody\r", 1), false)
	got, err := testkit.Run(t, l, func(co *kernel.Co) (string, error) {
		b, err := r.Readuntil(co, []byte("\r\n\r\n"))
		return string(b), err
	})
	require.NoError(t, err)
	assert.Equal(t, "head\r\n\r\n", got)

	_, err = testkit.Run(t, l, func(co *kernel.Co) ([]byte, error) { return r.Readuntil(co, nil) })
	assert.ErrorIs(t, err, kernel.ErrInvalidArgument)
}

func TestReaduntilLimit(t *testing.T) {
	l := testkit.NewLoop(t, "")

	// Separator found, but beyond the limit: the data stays buffered.
	r := NewReader(5)
	r.FeedData([]byte("0123456789\nrest"))
	_, err := testkit.Run(t, l, func(co *kernel.Co) ([]byte, error) { return r.Readuntil(co, []byte("\n")) })
	var over *LimitOverrunError
	require.True(t, errors.As(err, &over), "%v", err)
	assert.Equal(t, 10, over.Consumed)
	assert.Equal(t, 15, r.Buffered(), "readuntil leaves the data")

	// Readline drops the long line through its newline and carries on.
	_, err = testkit.Run(t, l, func(co *kernel.Co) ([]byte, error) { return r.Readline(co) })
	require.True(t, errors.As(err, &over), "%v", err)
	assert.Equal(t, "rest", string(r.unread()))

	// Not found within the limit while waiting for more.
	r = NewReader(5)
	feedLater(l, r, chunksOf("abcdefghijkl", 3), false)
	_, err = testkit.Run(t, l, func(co *kernel.Co) ([]byte, error) { return r.Readuntil(co, []byte("\n")) })
	require.True(t, errors.As(err, &over), "%v", err)
	assert.Greater(t, over.Consumed, 5)
	assert.Contains(t, over.Error(), "not found")

	// Readline without a newline in sight empties the buffer.
	_, err = testkit.Run(t, l, func(co *kernel.Co) ([]byte, error) { return r.Readline(co) })
	require.True(t, errors.As(err, &over))
	assert.Zero(t, r.Buffered())
}

func TestReaduntilIncomplete(t *testing.T) {
	l := testkit.NewLoop(t, "")
	r := NewReader(0)
	feedLater(l, r, chunksOf("no separator", 5), true)
	_, err := testkit.Run(t, l, func(co *kernel.Co) ([]byte, error) { return r.Readuntil(co, []byte("END")) })
	var inc *IncompleteReadError
	require.True(t, errors.As(err, &inc), "%v", err)
	assert.Equal(t, "no separator", string(inc.Partial))
	assert.Equal(t, -1, inc.Expected)
	assert.Contains(t, inc.Error(), "undefined")
}

func TestReaderException(t *testing.T) {
	l := testkit.NewLoop(t, "")
	r := NewReader(0)
	boom := errors.New("connection reset")
	kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
		co.Yield()
		r.SetException(boom)
		return struct{}{}, nil
	})
	_, err := testkit.Run(t, l, func(co *kernel.Co) ([]byte, error) { return r.Readline(co) })
	assert.ErrorIs(t, err, boom, "a waiting reader wakes with the error")
	r.FeedData([]byte("x\n"))
	_, err = testkit.Run(t, l, func(co *kernel.Co) ([]byte, error) { return r.Read(co, 1) })
	assert.ErrorIs(t, err, boom, "later reads fail too")
	assert.Same(t, boom, r.Exception())
}

func TestConcurrentReadRefused(t *testing.T) {
	l := testkit.NewLoop(t, "")
	r := NewReader(0)
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		first, _ := kernel.CreateTask(l, func(co *kernel.Co) ([]byte, error) { return r.Read(co, 1) })
		co.Yield()
		_, err := r.Read(co, 1)
		r.FeedData([]byte("z"))
		b, ferr := first.Await(co)
		if ferr != nil || string(b) != "z" {
			return struct{}{}, errors.New("the first reader did not get the data")
		}
		return struct{}{}, err
	})
	assert.ErrorIs(t, err, ErrConcurrentRead)
}

func TestReadCancelled(t *testing.T) {
	l := testkit.NewLoop(t, "")
	r := NewReader(0)
	_, err := testkit.Run(t, l, func(co *kernel.Co) ([]byte, error) {
		rd, _ := kernel.CreateTask(l, func(co *kernel.Co) ([]byte, error) { return r.Readline(co) })
		co.Yield()
		rd.Cancel()
		if _, err := rd.Await(co); !errors.Is(err, kernel.ErrCancelled) {
			return nil, errors.New("want cancelled")
		}
		// The reader is usable again.
		r.FeedData([]byte("ok\n"))
		return r.Readline(co)
	})
	require.NoError(t, err)
}

// pauseCounter is a ReadTransport that records pause and resume calls.
type pauseCounter struct {
	kernel.ReadTransport
	paused          bool
	pauses, resumes int
}

func (p *pauseCounter) PauseReading() error  { p.paused = true; p.pauses++; return nil }
func (p *pauseCounter) ResumeReading() error { p.paused = false; p.resumes++; return nil }

func TestBackPressure(t *testing.T) {
	l := testkit.NewLoop(t, "")
	tr := &pauseCounter{}
	r := NewReader(10)
	r.SetTransport(tr)
	r.FeedData(bytes.Repeat([]byte("x"), 20))
	assert.False(t, tr.paused, "at 2x the limit reading goes on")
	r.FeedData([]byte("y"))
	assert.True(t, tr.paused, "over 2x the limit reading pauses")
	r.FeedData([]byte("y"))
	assert.Equal(t, 1, tr.pauses, "paused once")

	_, err := testkit.Run(t, l, func(co *kernel.Co) ([]byte, error) { return r.Readexactly(co, 11) })
	require.NoError(t, err)
	assert.True(t, tr.paused, "11 bytes left: still over the limit")
	_, err = testkit.Run(t, l, func(co *kernel.Co) ([]byte, error) { return r.Readexactly(co, 1) })
	require.NoError(t, err)
	assert.False(t, tr.paused, "back to the limit: resumed")
	assert.Equal(t, 1, tr.resumes)

	// A reader that waits for more than it holds resumes a paused transport.
	r.FeedData(bytes.Repeat([]byte("z"), 20))
	require.True(t, tr.paused)
	kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) { co.Yield(); r.FeedData([]byte("\n")); return struct{}{}, nil })
	_, err = testkit.Run(t, l, func(co *kernel.Co) ([]byte, error) { return r.Readexactly(co, r.Buffered()+1) })
	require.NoError(t, err)
	// Resumed to wait, paused again when the last byte took the buffer over
	// 2x the limit, resumed when the read emptied it.
	assert.Equal(t, 3, tr.pauses)
	assert.Equal(t, 3, tr.resumes)
	assert.False(t, tr.paused)
}
