package proactorplane

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestEntryRoundTrip(t *testing.T) {
	in := Entry{Op: OpWrite, Flags: FlagMultishot, Reg: 7, UserData: 1<<40 | 3, Aux: 9, Offset: -1, Len: 5, ArenaOff: 4096, ArenaLen: 100}
	var b [SQEntrySz]byte
	for i := range b {
		b[i] = 0xff // Put must clear the reserved bytes
	}
	in.Put(b[:])
	var out Entry
	if err := ParseEntry(b[:], &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("got %+v, want %+v", out, in)
	}
}

func TestParseEntryRefuses(t *testing.T) {
	for name, e := range map[string]Entry{
		"unknown op":        {Op: 42},
		"reserved userdata": {Op: OpNop, UserData: 1 << 63},
		"arena overflow":    {Op: OpWrite, ArenaOff: ArenaSize - 10, ArenaLen: 11},
		"read not provided": {Op: OpRead, Group: BufGroup},
		"wrong group":       {Op: OpRead, Flags: FlagProvided, Group: 2},
		"provide range":     {Op: OpProvide, Group: BufGroup, Aux: BufCount},
		"poll events":       {Op: OpPoll, Events: 0x2},
		"connect addr":      {Op: OpConnect, ArenaLen: 200},
	} {
		var b [SQEntrySz]byte
		e.Put(b[:])
		var out Entry
		if err := ParseEntry(b[:], &out); !errors.Is(err, ErrEntry) {
			t.Errorf("%s: ParseEntry = %v, want ErrEntry", name, err)
		}
	}
	var b [SQEntrySz]byte
	b[60] = 1
	var out Entry
	if err := ParseEntry(b[:], &out); !errors.Is(err, ErrEntry) {
		t.Errorf("reserved bytes: %v", err)
	}
}

func TestResultRoundTrip(t *testing.T) {
	in := Result{UserData: 5, Res: -11, Flags: ResMore | ResBuffer, Group: BufGroup, Buffer: 255}
	var b [CQEntrySz]byte
	in.Put(b[:])
	var out Result
	if err := ParseResult(b[:], &out); err != nil || out != in {
		t.Fatalf("got %+v %v, want %+v", out, err, in)
	}
	bad := Result{Flags: ResBuffer, Group: BufGroup, Buffer: BufCount}
	bad.Put(b[:])
	if err := ParseResult(b[:], &out); !errors.Is(err, ErrEntry) {
		t.Fatalf("buffer out of range: %v", err)
	}
}

// TestPlaneRings moves entries and results through a plane created by one
// side and attached by the other, across goroutines, with the sleep flags.
func TestPlaneRings(t *testing.T) {
	host, fd, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	plugin, err := Attach(fd)
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer plugin.Close()
	const n = 10000
	done := make(chan error, 1)
	go func() {
		var e Entry
		for got := 0; got < n; {
			k := plugin.EntriesReady()
			for i := uint32(0); i < k; i++ {
				if err := ParseEntry(plugin.PeekEntry(i), &e); err != nil {
					done <- err
					return
				}
				if e.UserData != uint64(got) {
					done <- errors.New("out of order")
					return
				}
				for plugin.ResultRoom() == 0 {
				}
				r := Result{UserData: e.UserData, Res: int32(e.Len)}
				r.Put(plugin.NextResult())
				got++
			}
			plugin.ConsumeEntries(k)
			plugin.PublishResults()
		}
		done <- nil
	}()
	sent, recvd := 0, 0
	var r Result
	for recvd < n {
		for sent < n {
			b := host.NextEntry()
			if b == nil {
				break
			}
			e := Entry{Op: OpNop, UserData: uint64(sent), Len: uint32(sent)}
			e.Put(b)
			sent++
		}
		host.PublishEntries()
		k := host.ResultsReady()
		for i := uint32(0); i < k; i++ {
			if err := ParseResult(host.PeekResult(i), &r); err != nil {
				t.Fatal(err)
			}
			if r.UserData != uint64(recvd) || r.Res != int32(recvd) {
				t.Fatalf("result %d: %+v", recvd, r)
			}
			recvd++
		}
		host.ConsumeResults(k)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !plugin.PluginSleep() {
		t.Fatal("PluginSleep saw entries on an empty ring")
	}
	host.NextEntry()
	if !host.PublishEntries() {
		t.Fatal("the host did not see the plugin asleep")
	}
	if host.PublishEntries() {
		t.Fatal("the doorbell was claimed twice")
	}
}

// TestAttachRefusesUnsealed: a memfd anyone could shrink is refused.
func TestAttachRefusesUnsealed(t *testing.T) {
	fd, err := unix.MemfdCreate("x", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	unix.Ftruncate(fd, Size)
	if _, err := Attach(fd); err == nil {
		t.Fatal("Attach took an unsealed memfd")
	}
}

// TestFramesCarryDescriptors sends a hello with three descriptors over a
// SEQPACKET pair and checks what arrives.
func TestFramesCarryDescriptors(t *testing.T) {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sp[0])
	defer unix.Close(sp[1])
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	fds := []int{int(r.Fd()), int(w.Fd()), int(r.Fd())}
	if err := SendFrame(sp[0], Frame{Kind: FrameHello, A: Size}, fds...); err != nil {
		t.Fatal(err)
	}
	var f Frame
	got := make([]int, 4)
	n, err := RecvFrame(sp[1], &f, got)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 || f.Kind != FrameHello || f.A != Size {
		t.Fatalf("got %d fds, %+v", n, f)
	}
	for _, fd := range got[:n] {
		unix.Close(fd)
	}
	if err := SendFrame(sp[0], Frame{Kind: FrameRegister, A: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := RecvFrame(sp[1], &f, got); !errors.Is(err, ErrEntry) {
		t.Fatalf("a REGISTER without its descriptor: %v", err)
	}
}

func TestArena(t *testing.T) {
	var a Arena
	off, size, ok := a.Alloc(1000)
	if !ok || size != 1024 || off != 0 {
		t.Fatalf("Alloc(1000) = %d %d %v", off, size, ok)
	}
	a.Free(off, size)
	off2, _, _ := a.Alloc(600)
	if off2 != off {
		t.Fatalf("a freed piece was not reused: %d", off2)
	}
	if _, size, _ := a.Alloc(1 << 30); size != MaxPiece {
		t.Fatalf("a huge write got a piece of %d", size)
	}
	n := 0
	for {
		if _, _, ok := a.Alloc(MaxPiece); !ok {
			break
		}
		n++
	}
	if n == 0 || n > ArenaSize/256 {
		t.Fatalf("took %d pieces", n)
	}
}
