package kernel

// maxWriteBufs is how many queued buffers one write operation offers the
// driver (the readiness driver sends them with one sendmsg).
const maxWriteBufs = 64

// writeQueue holds what the socket did not take: bufs[0][head:] goes first.
// Small writes are copied into pooled chunks (several writes share one
// chunk); a large one is copied into a buffer of its own. Only unsent bytes
// are ever copied.
//
// The bytes offered to a write operation belong to the driver until it
// completes, so pushing only ever appends after them (a chunk's tail past
// what was offered, or new buffers), and a queue dropped while a write is
// in flight is abandoned rather than recycled.
type writeQueue struct {
	bufs [][]byte
	head int
	size int
}

func (q *writeQueue) push(l *Loop, b []byte) {
	q.size += len(b)
	for len(b) > 0 {
		if n := len(q.bufs); n > 0 {
			last := q.bufs[n-1]
			if cap(last) == writeChunkSize && len(last) < cap(last) {
				k := copy(last[len(last):cap(last)], b)
				q.bufs[n-1] = last[:len(last)+k]
				b = b[k:]
				continue
			}
		}
		if len(b) > writeChunkSize {
			q.bufs = append(q.bufs, append(l.getLarge(len(b)), b...))
			return
		}
		q.bufs = append(q.bufs, l.getChunk())
	}
}

// offer appends to dst the queued buffers one write operation takes (the
// first one from head) and returns it.
func (q *writeQueue) offer(dst [][]byte) [][]byte {
	for i, b := range q.bufs {
		if len(dst) == maxWriteBufs {
			break
		}
		if i == 0 {
			b = b[q.head:]
		}
		if len(b) > 0 {
			dst = append(dst, b)
		}
	}
	return dst
}

// consume drops n sent bytes from the front, recycling emptied chunks.
func (q *writeQueue) consume(l *Loop, n int) {
	q.size -= n
	for n > 0 {
		rest := len(q.bufs[0]) - q.head
		if n < rest {
			q.head += n
			return
		}
		n -= rest
		l.putChunk(q.bufs[0])
		q.bufs[0] = nil
		q.bufs = q.bufs[1:]
		q.head = 0
	}
	if len(q.bufs) == 0 {
		q.bufs = q.bufs[:0:0] // let the backing array go once drained
	}
}

// clear drops everything queued; the chunks go back to the pool unless a
// write is in flight (inFlight), whose driver may still read them.
func (q *writeQueue) clear(l *Loop, inFlight bool) {
	if !inFlight {
		for _, b := range q.bufs {
			l.putChunk(b)
		}
	}
	clear(q.bufs)
	q.bufs, q.head, q.size = nil, 0, 0
}
