package proactorplane

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Plane is one mapping of the shared memory, host's or plugin's: the
// header's indices, the two rings, the read buffers and the write arena.
// The host produces submissions and consumes results; the plugin the
// reverse. Each side uses its own methods from one goroutine only.
type Plane struct {
	Mem   []byte
	Bufs  [][]byte // BufCount read buffers of BufSize bytes
	Arena []byte   // ArenaSize bytes the host writes outgoing bytes into

	sqHead, sqTail, cqHead, cqTail *uint32
	pluginSleeping, hostSleeping   *uint32
	heartbeat                      *uint64
	acked, ackWanted               *uint32

	// sqLocal is the host's tail (entries written, not yet published) or
	// the plugin's head; cqLocal the plugin's tail or the host's head.
	sqLocal, cqLocal uint32
}

func (p *Plane) bind(mem []byte) {
	p.Mem = mem
	base := unsafe.Pointer(&mem[0])
	u32 := func(off int) *uint32 { return (*uint32)(unsafe.Add(base, off)) }
	p.sqHead, p.sqTail, p.cqHead, p.cqTail = u32(offSQHead), u32(offSQTail), u32(offCQHead), u32(offCQTail)
	p.pluginSleeping, p.hostSleeping = u32(offPluginSleeping), u32(offHostSleeping)
	p.heartbeat = (*uint64)(unsafe.Add(base, offHeartbeat))
	p.acked, p.ackWanted = u32(offAcked), u32(offAckWanted)
	p.Bufs = make([][]byte, BufCount)
	for i := range p.Bufs {
		o := BufOff + i*BufSize
		p.Bufs[i] = mem[o : o+BufSize : o+BufSize]
	}
	p.Arena = mem[ArenaOff : ArenaOff+ArenaSize : ArenaOff+ArenaSize]
}

// Create makes a new plane for the host: a memfd of Size bytes, mapped,
// its header written, then sealed against shrinking and growing (so that
// neither side can make the other's mapping fault with SIGBUS). It returns
// the plane and the memfd, which the host sends to the plugin and then
// closes (the mapping keeps the memory).
func Create() (*Plane, int, error) {
	fd, err := unix.MemfdCreate("loopkernel-proactor-plane", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, -1, fmt.Errorf("proactor plane: memfd_create: %w", err)
	}
	fail := func(what string, err error) (*Plane, int, error) {
		unix.Close(fd)
		return nil, -1, fmt.Errorf("proactor plane: %s: %w", what, err)
	}
	if err := unix.Ftruncate(fd, Size); err != nil {
		return fail("ftruncate", err)
	}
	mem, err := unix.Mmap(fd, 0, Size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail("mmap", err)
	}
	WriteHeader(mem)
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		unix.Munmap(mem)
		return fail("seal", err)
	}
	p := &Plane{}
	p.bind(mem)
	return p, fd, nil
}

// Attach maps the plane a host sent (the plugin's side). The memfd must be
// sealed against shrinking and growing and hold a version 1 header; the
// descriptor may be closed once Attach returns.
func Attach(memfd int) (*Plane, error) {
	var st unix.Stat_t
	if err := unix.Fstat(memfd, &st); err != nil {
		return nil, fmt.Errorf("proactor plane: fstat: %w", err)
	}
	seals, err := unix.FcntlInt(uintptr(memfd), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("proactor plane: the descriptor is no sealable memfd: %w", err)
	}
	if seals&(unix.F_SEAL_SHRINK|unix.F_SEAL_GROW) != unix.F_SEAL_SHRINK|unix.F_SEAL_GROW {
		return nil, fmt.Errorf("%w: memfd not sealed against shrinking and growing (seals %#x)", ErrLayout, seals)
	}
	if st.Size != Size {
		return nil, fmt.Errorf("%w: the memfd holds %d bytes, want %d", ErrLayout, st.Size, Size)
	}
	mem, err := unix.Mmap(memfd, 0, Size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("proactor plane: mmap: %w", err)
	}
	if err := CheckHeader(mem, st.Size); err != nil {
		unix.Munmap(mem)
		return nil, err
	}
	p := &Plane{}
	p.bind(mem)
	p.sqLocal = atomic.LoadUint32(p.sqHead)
	p.cqLocal = atomic.LoadUint32(p.cqTail)
	return p, nil
}

// Close unmaps the plane.
func (p *Plane) Close() error {
	if p.Mem == nil {
		return nil
	}
	err := unix.Munmap(p.Mem)
	*p = Plane{}
	return err
}

// Host side: submissions.

// NextEntry returns the next free submission slot (SQEntrySz bytes) and
// takes it, or nil when the ring is full (the plugin has not consumed
// enough yet).
func (p *Plane) NextEntry() []byte {
	if p.sqLocal-atomic.LoadUint32(p.sqHead) >= SQEntries {
		return nil
	}
	o := SQOff + int(p.sqLocal&(SQEntries-1))*SQEntrySz
	p.sqLocal++
	return p.Mem[o : o+SQEntrySz : o+SQEntrySz]
}

// Unpublished reports whether entries were taken since the last Publish.
func (p *Plane) Unpublished() bool { return atomic.LoadUint32(p.sqTail) != p.sqLocal }

// PublishEntries makes the entries taken so far visible to the plugin
// (release) and reports whether the plugin was asleep and so must be rung
// (the caller writes its doorbell; the flag is cleared here, so only one
// side rings).
func (p *Plane) PublishEntries() (ring bool) {
	atomic.StoreUint32(p.sqTail, p.sqLocal)
	return atomic.LoadUint32(p.pluginSleeping) != 0 && atomic.SwapUint32(p.pluginSleeping, 0) != 0
}

// Host side: results.

// ResultsReady is how many results wait for the host (acquire).
func (p *Plane) ResultsReady() uint32 { return atomic.LoadUint32(p.cqTail) - p.cqLocal }

// PeekResult returns the i-th waiting result's bytes; i < ResultsReady().
func (p *Plane) PeekResult(i uint32) []byte {
	o := CQOff + int((p.cqLocal+i)&(CQEntries-1))*CQEntrySz
	return p.Mem[o : o+CQEntrySz : o+CQEntrySz]
}

// ConsumeResults hands n results' slots back to the plugin (release).
func (p *Plane) ConsumeResults(n uint32) {
	p.cqLocal += n
	atomic.StoreUint32(p.cqHead, p.cqLocal)
}

// HostSleep announces that the host is about to wait on its doorbell and
// reports whether results arrived meanwhile (then it must not wait).
// HostAwake withdraws the announcement.
func (p *Plane) HostSleep() (wait bool) {
	atomic.StoreUint32(p.hostSleeping, 1)
	return p.ResultsReady() == 0
}

// HostAwake withdraws HostSleep.
func (p *Plane) HostAwake() { atomic.StoreUint32(p.hostSleeping, 0) }

// Published is the host's tail as last published.
func (p *Plane) Published() uint32 { return p.sqLocal }

// WantAck asks the plugin to ring once it has handled every entry up to
// tail, and reports whether it has already (then there is nothing to wait
// for).
func (p *Plane) WantAck(tail uint32) (done bool) {
	atomic.StoreUint32(p.ackWanted, tail)
	return int32(atomic.LoadUint32(p.acked)-tail) >= 0
}

// Acked reports whether the plugin has handled every entry up to tail.
func (p *Plane) Acked(tail uint32) bool { return int32(atomic.LoadUint32(p.acked)-tail) >= 0 }

// Heartbeat is the plugin's heartbeat counter, which the host's watchdog
// reads.
func (p *Plane) Heartbeat() uint64 { return atomic.LoadUint64(p.heartbeat) }

// Plugin side: submissions.

// EntriesReady is how many submissions wait for the plugin (acquire).
func (p *Plane) EntriesReady() uint32 { return atomic.LoadUint32(p.sqTail) - p.sqLocal }

// PeekEntry returns the i-th waiting submission's bytes; i < EntriesReady().
func (p *Plane) PeekEntry(i uint32) []byte {
	o := SQOff + int((p.sqLocal+i)&(SQEntries-1))*SQEntrySz
	return p.Mem[o : o+SQEntrySz : o+SQEntrySz]
}

// ConsumeEntries hands n submission slots back to the host (release).
func (p *Plane) ConsumeEntries(n uint32) {
	p.sqLocal += n
	atomic.StoreUint32(p.sqHead, p.sqLocal)
}

// Plugin side: results.

// ResultRoom is how many results the plugin may write now.
func (p *Plane) ResultRoom() uint32 { return CQEntries - (p.cqLocal - atomic.LoadUint32(p.cqHead)) }

// NextResult takes the next result slot; the caller checked ResultRoom.
func (p *Plane) NextResult() []byte {
	o := CQOff + int(p.cqLocal&(CQEntries-1))*CQEntrySz
	p.cqLocal++
	return p.Mem[o : o+CQEntrySz : o+CQEntrySz]
}

// PublishResults makes the results written visible to the host (release)
// and reports whether the host was asleep and must be rung.
func (p *Plane) PublishResults() (ring bool) {
	atomic.StoreUint32(p.cqTail, p.cqLocal)
	return atomic.LoadUint32(p.hostSleeping) != 0 && atomic.SwapUint32(p.hostSleeping, 0) != 0
}

// PluginSleep announces that the plugin is about to block and reports
// whether submissions arrived meanwhile (then it must not block).
func (p *Plane) PluginSleep() (wait bool) {
	atomic.StoreUint32(p.pluginSleeping, 1)
	return p.EntriesReady() == 0
}

// PluginAwake withdraws PluginSleep.
func (p *Plane) PluginAwake() { atomic.StoreUint32(p.pluginSleeping, 0) }

// Ack records that the plugin handled every submission it consumed (its
// proactor has submitted them and returned what completed at once) and
// reports whether the host waits for that.
func (p *Plane) Ack() (wanted bool) {
	old := atomic.SwapUint32(p.acked, p.sqLocal)
	w := atomic.LoadUint32(p.ackWanted)
	return int32(w-old) > 0 && int32(p.sqLocal-w) >= 0
}

// Beat advances the heartbeat.
func (p *Plane) Beat() { atomic.AddUint64(p.heartbeat, 1) }

// Doorbells.

var one uint64 = 1

// Ring writes 1 to the eventfd efd (a doorbell); EAGAIN (the counter is
// saturated, so the peer is being woken anyway) is no failure.
func Ring(efd int) error {
	_, _, e := unix.Syscall(unix.SYS_WRITE, uintptr(efd), uintptr(unsafe.Pointer(&one)), 8)
	if e != 0 && e != unix.EAGAIN {
		return fmt.Errorf("proactor plane: ring doorbell: %w", e)
	}
	return nil
}

// Drain resets the non-blocking eventfd efd.
func Drain(efd int) {
	var v uint64
	unix.Syscall(unix.SYS_READ, uintptr(efd), uintptr(unsafe.Pointer(&v)), 8)
}
