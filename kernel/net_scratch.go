package kernel

const (
	// recvBufSize is the size of each loop's shared receive buffer.
	//
	// The trade-off: asyncio reads up to 256 KiB per readiness event into a
	// fresh bytes object; a per-transport buffer of that size would cost
	// 256 KiB per connection (2.5 GiB for 10k idle connections). Because
	// received bytes are only valid during DataReceived and the loop runs
	// one callback at a time, every stream and datagram transport of a loop
	// can read into the same buffer, like uvloop's per-loop receive buffer:
	// it is what a plain Protocol's transport hands the driver when asked
	// for a buffer. So memory is O(1) per loop, receiving allocates nothing,
	// and a bulk transfer still takes large bites per system call (fewer
	// wake-ups than a 64 KiB buffer) while a small message costs the same as
	// with a small buffer.
	recvBufSize = 256 << 10
	// writeChunkSize is the size of the pooled chunks that small unsent
	// writes are copied into; writes larger than a chunk are copied into one
	// buffer of their own size.
	writeChunkSize = 16 << 10
	// maxFreeChunks bounds a loop's pool of write chunks (1 MiB).
	maxFreeChunks = 64
	// maxSpareLarge bounds the one large write buffer a loop keeps for
	// reuse: a bulk writer (a pipe to a child, a file upload) queues a
	// large remainder on nearly every write, and allocating each one
	// afresh costs more in collection and returned memory than the copy.
	maxSpareLarge = 1 << 20
)

// netState is the per-loop scratch space the transports share. It lives on
// the loop (one field) so that it is freed with it.
type netState struct {
	rbuf     []byte
	one      [1][]byte // a single buffer offered to TryWrite without a slice literal
	chunks   [][]byte  // free write chunks, each of capacity writeChunkSize
	large    []byte    // one spare buffer for a large queued write (see maxSpareLarge)
	waits    *sockWait // free sock_* waits (kernel/sockwait.go)
	tlsPlain []byte    // decrypted bytes for plain Protocols (kernel/tls_protocol.go)
}

// recvBuf returns the loop's shared receive buffer.
func (l *Loop) recvBuf() []byte {
	if l.net.rbuf == nil {
		l.net.rbuf = make([]byte, recvBufSize)
	}
	return l.net.rbuf
}

func (l *Loop) getChunk() []byte {
	n := len(l.net.chunks)
	if n == 0 {
		return make([]byte, 0, writeChunkSize)
	}
	c := l.net.chunks[n-1]
	l.net.chunks[n-1] = nil
	l.net.chunks = l.net.chunks[:n-1]
	return c[:0]
}

func (l *Loop) putChunk(c []byte) {
	if cap(c) == writeChunkSize && len(l.net.chunks) < maxFreeChunks {
		l.net.chunks = append(l.net.chunks, c[:0])
		return
	}
	if cap(c) > writeChunkSize && cap(c) <= maxSpareLarge && cap(c) > cap(l.net.large) {
		l.net.large = c[:0]
	}
}

// getLarge returns an empty buffer for n > writeChunkSize queued bytes:
// the spare one if it is big enough, else a new one.
func (l *Loop) getLarge(n int) []byte {
	if b := l.net.large; cap(b) >= n {
		l.net.large = nil
		return b
	}
	return make([]byte, 0, n)
}

// tryWrite offers b to the descriptor now (the driver's TryWrite) through
// the loop's one-buffer scratch, so the call allocates nothing.
func (l *Loop) tryWrite(r *ioRef, b []byte) (int, error) {
	l.net.one[0] = b
	n, err := r.f.TryWrite(l.net.one[:])
	l.net.one[0] = nil
	return n, err
}
