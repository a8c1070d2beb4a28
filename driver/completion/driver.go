// Package completion is the I/O seam (sdk.Driver) over any sdk.Proactor:
// it submits each operation to the back-end as a record (sdk.Submission)
// and turns the back-end's completions into the callbacks the kernel runs,
// as driver/readiness does for readiness from a selector.
//
// It owns the descriptor table (slots with per-operation sequence numbers
// carried in each submission's user data, so that a completion for an
// operation that was stopped, cancelled or belongs to a closed descriptor is
// recognised), a pool of provided buffers (mmap'd, registered once) that
// reads complete into, and the translation of each seam operation:
//
//   - ReadStart: a multishot read into provided buffers; each completion's
//     bytes are copied into the caller's alloc buffer (the seam lets alloc
//     return a buffer shared by every transport, which no operation in
//     flight may hold) and the provided buffer goes straight back.
//   - Write, Connect, Shutdown: one submission each. TryWrite reports
//     ErrWouldBlock, so writes travel in the loop's single enter.
//   - Accept: a multishot accept.
//   - Watch, RecvFromStart, SendTo, Sendfile: a one-shot poll of the
//     descriptor, then the system call itself (level-triggered, as the seam
//     promises, by re-arming the poll after each callback).
//
// It imports sdk and never the kernel or a back-end.
package completion

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

const (
	// completionBatch is how many completions one Poll takes at most.
	completionBatch = 256
	// bufGroup, bufCount and bufSize describe the provided-buffer pool:
	// 256 buffers of 16 KiB, 4 MiB of address space, resident only as
	// used.
	bufGroup = 1
	bufCount = 256
	bufSize  = 16 << 10
)

// Driver is the completion driver of one loop. Use it from the loop's
// goroutine only, except Wake.
type Driver struct {
	p     sdk.Proactor
	comps []sdk.Completion
	tab   table
	iter  uint64 // Poll count, to know whether a descriptor has unsubmitted entries

	deferred []func()

	one    [1]sdk.Submission
	give   [1][]byte
	bufMem []byte
	bufs   [][]byte
	from   sdk.SockAddr

	residue map[int]residue

	caps   sdk.DriverCapabilities
	closed bool
}

// New returns a driver over p, which it owns from now on and closes in
// Close. It registers the driver's provided-buffer pool with p.
func New(p sdk.Proactor) (*Driver, error) {
	d := &Driver{p: p, comps: make([]sdk.Completion, completionBatch)}
	d.tab.init()
	mem, err := unix.Mmap(-1, 0, bufCount*bufSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("completion driver: mmap buffers: %w", err)
	}
	d.bufMem = mem
	d.bufs = make([][]byte, bufCount)
	for i := range d.bufs {
		d.bufs[i] = mem[i*bufSize : (i+1)*bufSize : (i+1)*bufSize]
	}
	if err := p.ProvideBuffers(bufGroup, d.bufs); err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("completion driver: %w", err)
	}
	pc := p.Capabilities()
	d.caps = sdk.DriverCapabilities{
		Name: "completion", Family: "proactor", Backend: pc.Name,
		Ops: []string{sdk.CapWatch, sdk.CapSendfile, sdk.CapMultishot, sdk.CapProvidedBuffers},
	}
	return d, nil
}

// Proactor returns the back-end under the driver, for diagnostics.
func (d *Driver) Proactor() sdk.Proactor { return d.p }

// Open implements sdk.Driver. It makes no system call.
func (d *Driver) Open(fd int) (sdk.FD, error) {
	if d.closed {
		return nil, fmt.Errorf("open fd %d: %w", fd, sdk.ErrSelectorClosed)
	}
	if fd < 0 {
		return nil, fmt.Errorf("open fd %d: %w", fd, unix.EBADF)
	}
	if _, ok := d.tab.byFD[fd]; ok {
		return nil, fmt.Errorf("open fd %d: %w", fd, sdk.ErrExists)
	}
	f := d.tab.alloc(d, fd)
	d.takeResidue(f)
	return f, nil
}

// Poll implements sdk.Driver: deferred completions first, then one call
// into the back-end, which submits every operation queued since the last
// Poll and waits for completions; each descriptor with completions gets
// its dispatch callback in ready once.
func (d *Driver) Poll(ready []func(), timeout time.Duration) (int, error) {
	if d.closed {
		return 0, sdk.ErrSelectorClosed
	}
	d.iter++
	n := 0
	if len(d.deferred) > 0 {
		n = copy(ready, d.deferred)
		rest := copy(d.deferred, d.deferred[n:])
		clear(d.deferred[rest:])
		d.deferred = d.deferred[:rest]
		timeout = 0
	}
	room := min(len(ready)-n, len(d.comps))
	if room == 0 {
		return n, nil
	}
	k, err := d.p.Complete(d.comps[:room], timeout)
	if err != nil {
		return n, err
	}
	for _, c := range d.comps[:k] {
		slot, _, _ := decode(c.UserData)
		if int(slot) >= len(d.tab.slots) {
			continue
		}
		f := d.tab.slots[slot]
		if !c.More {
			f.inflight--
		}
		f.evq = append(f.evq, c)
		if !f.queued {
			f.queued = true
			ready[n] = f.run
			n++
		}
	}
	return n, nil
}

// Wake implements sdk.Driver.
func (d *Driver) Wake() error { return d.p.Wake() }

// Capabilities implements sdk.Driver.
func (d *Driver) Capabilities() sdk.DriverCapabilities { return d.caps }

// Close implements sdk.Driver: the back-end is closed (it cancels and
// drains what is in flight), then the buffer pool is unmapped.
func (d *Driver) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	for _, f := range d.tab.slots {
		if f.open {
			f.detach()
		}
	}
	clear(d.deferred)
	d.deferred = nil
	err := d.p.Close()
	if err == nil {
		unix.Munmap(d.bufMem)
	}
	d.bufs, d.bufMem = nil, nil
	return err
}

// later queues a completion for the next Poll.
func (d *Driver) later(fn func()) { d.deferred = append(d.deferred, fn) }

// submit hands one operation to the back-end.
func (d *Driver) submit(s sdk.Submission) error {
	d.one[0] = s
	err := d.p.Submit(d.one[:])
	d.one[0] = sdk.Submission{}
	return err
}

// giveBack returns provided buffer bid to the pool.
func (d *Driver) giveBack(bid uint16) {
	if int(bid) >= len(d.bufs) {
		return
	}
	d.give[0] = d.bufs[bid]
	d.p.ProvideBuffers(bufGroup, d.give[:]) // only fails for a buffer not of the group
	d.give[0] = nil
}

// User data: slot (31 bits) | kind (8 bits) | sequence (24 bits).
func encode(slot uint32, k kind, seq uint32) uint64 {
	return uint64(slot)<<32 | uint64(k)<<24 | uint64(seq&0xffffff)
}

func decode(ud uint64) (uint32, kind, uint32) {
	return uint32(ud>>32) & 0x7fffffff, kind(ud >> 24 & 0xff), uint32(ud & 0xffffff)
}

// table maps descriptors to slots. Slots are reused only once every
// operation submitted on them has completed.
type table struct {
	byFD  map[int]uint32
	slots []*file
	free  []uint32
}

func (t *table) init() { t.byFD = make(map[int]uint32) }

func (t *table) alloc(d *Driver, fd int) *file {
	var f *file
	if n := len(t.free); n > 0 {
		f = t.slots[t.free[n-1]]
		t.free = t.free[:n-1]
	} else {
		f = &file{d: d, slot: uint32(len(t.slots))}
		f.run = f.dispatch // made once per slot
		t.slots = append(t.slots, f)
	}
	f.reset(fd)
	t.byFD[fd] = f.slot
	return f
}

// release frees f's slot when it is closed, has nothing in flight and no
// dispatch queued.
func (t *table) release(f *file) {
	if f.open || f.inflight > 0 || f.queued || f.freed {
		return
	}
	f.freed = true
	t.free = append(t.free, f.slot)
}

var _ sdk.Driver = (*Driver)(nil)
