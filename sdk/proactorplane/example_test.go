package proactorplane_test

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk/proactorplane"
)

// A host creates the plane and writes a submission; the plugin (here the
// same process, through a second mapping of the memfd) reads it and
// answers with a result.
func Example() {
	host, memfd, err := proactorplane.Create()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer host.Close()
	plugin, err := proactorplane.Attach(memfd)
	unix.Close(memfd)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer plugin.Close()

	e := proactorplane.Entry{Op: proactorplane.OpNop, UserData: 7}
	e.Put(host.NextEntry())
	host.PublishEntries()

	var got proactorplane.Entry
	proactorplane.ParseEntry(plugin.PeekEntry(0), &got)
	plugin.ConsumeEntries(1)
	r := proactorplane.Result{UserData: got.UserData, Res: 0}
	r.Put(plugin.NextResult())
	plugin.PublishResults()

	var res proactorplane.Result
	proactorplane.ParseResult(host.PeekResult(0), &res)
	host.ConsumeResults(1)
	fmt.Println(got.Op, res.UserData, res.Res)
	// Output: NOP 7 0
}

// Alloc cuts a write into the arena's size classes.
func ExampleArena_Alloc() {
	var a proactorplane.Arena
	off, size, ok := a.Alloc(1000)
	fmt.Println(off, size, ok)
	a.Free(off, size)
	// Output: 0 1024 true
}

func ExampleSendFrame() {
	sp, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(sp[0])
	defer unix.Close(sp[1])
	efd, _ := unix.Eventfd(0, unix.EFD_CLOEXEC)
	defer unix.Close(efd)
	proactorplane.SendFrame(sp[0], proactorplane.Frame{Kind: proactorplane.FrameRegister, A: 12}, efd)
	var f proactorplane.Frame
	fds := make([]int, 1)
	n, err := proactorplane.RecvFrame(sp[1], &f, fds)
	fmt.Println(n, f.A, err)
	unix.Close(fds[0])
	// Output: 1 12 <nil>
}
