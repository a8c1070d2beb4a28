package conformance

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/sdk"
)

// Subprocesses through the transport and protocol: SubprocessExec and
// SubprocessShell, seen through a recording SubprocessProtocol.
var processCases = []ncase{
	{name: "process/cat-round-trip", run: pCatRoundTrip},
	{name: "process/killed-by-signal", run: pKilledBySignal},
	{name: "process/exits-before-pipes-close", run: pExitsBeforePipes},
	{name: "process/grandchild-keeps-pipe", run: pGrandchild},
	{name: "process/signal-after-exit", run: pSignalAfterExit},
	{name: "process/many-children", run: pManyChildren, alone: true},
	{name: "process/reader-exits", run: pReaderExits},
	{name: "process/pty", run: pPty},
	{name: "process/errors", run: pErrors, alone: true},
	{name: "process/stdio-options", run: pStdioOptions},
	{name: "process/shell-quoting", run: pShellQuoting},
	{name: "process/close-kills", run: pCloseKills},
	{name: "process/loop-close-reaps", run: pLoopCloseReaps, alone: true},
	{name: "process/without-watch", run: pWithoutWatch},
}

// catSizes are the payloads of the cat round trip: 1 B to 64 MiB.
var catSizes = []int{1, 100, 64 << 10, 1 << 20, 16 << 20, 64 << 20}

// catOnce sends size pattern bytes through cat on l and checks they come
// back intact, the child exits 0, and the protocol sees asyncio's order.
func (n *nt) catOnce(co *kernel.Co, size int) error {
	p := newProcProto()
	p.keep, p.check = false, newPatternCheck()
	tr, got, err := kernel.SubprocessExec(co, func() *procProto { return p }, "cat", nil, &kernel.SubprocessOptions{Stderr: kernel.StdioInherit})
	if err != nil {
		return err
	}
	require.Same(n, p, got, "rule: SubprocessExec returns the protocol its factory made")
	require.Equal(n, []string{"made"}, p.events, "rule: ConnectionMade has run when SubprocessExec returns")
	require.Greater(n, tr.GetPid(), 0, "rule: GetPid is the child's pid")
	in, ok := tr.GetPipeTransport(0).(kernel.WriteTransport)
	require.True(n, ok, "rule: GetPipeTransport(0) is a WriteTransport for a piped stdin")
	require.Nil(n, tr.GetPipeTransport(2), "rule: GetPipeTransport(2) is nil when stderr is not a pipe")
	pat := bigPattern()
	for left := size; left > 0; {
		k := min(left, len(pat))
		require.NoError(n, in.Write(pat[:k]))
		left -= k
		// Hold the buffer to a few chunks: wait while cat catches up.
		if err := n.waitUntil(co, "rule: stdin's buffer drains as cat reads", func() bool { return in.GetWriteBufferSize() <= 8<<20 }); err != nil {
			return err
		}
	}
	require.NoError(n, in.WriteEOF(), "rule: WriteEOF on a pipe closes it")
	if err := n.waitUntil(co, fmt.Sprintf("rule: a %d-byte cat round trip ends in ConnectionLost", size), func() bool { return p.lost }); err != nil {
		return err
	}
	require.Equal(n, size, p.n[1], "rule: every byte written to cat's stdin comes back on its stdout (size %d)", size)
	require.Equal(n, -1, p.check.bad, "rule: bytes arrive intact and in order (size %d)", size)
	rc, ok := tr.GetReturncode()
	require.True(n, ok, "rule: GetReturncode is known once the child exited")
	require.Equal(n, 0, rc, "rule: cat exits 0")
	n.checkOrder(p, 2)
	return nil
}

// pCatRoundTrip: 1 B to 64 MiB through cat's stdin and stdout.
func pCatRoundTrip(n *nt) {
	n.needTool("cat")
	l := n.newLoop()
	n.run(l, "cat round trips", func(co *kernel.Co) error {
		for _, size := range catSizes {
			if err := n.catOnce(co, size); err != nil {
				return err
			}
		}
		return nil
	})
}

// pKilledBySignal: a child killed by a signal reports minus the signal;
// Terminate, Kill and SendSignal each deliver theirs.
func pKilledBySignal(n *nt) {
	n.needTool("sleep")
	l := n.newLoop()
	n.run(l, "signals", func(co *kernel.Co) error {
		for _, c := range []struct {
			send func(kernel.SubprocessTransport) error
			sig  syscall.Signal
		}{
			{func(t kernel.SubprocessTransport) error { return t.Terminate() }, syscall.SIGTERM},
			{func(t kernel.SubprocessTransport) error { return t.Kill() }, syscall.SIGKILL},
			{func(t kernel.SubprocessTransport) error { return t.SendSignal(syscall.SIGUSR1) }, syscall.SIGUSR1},
		} {
			p := newProcProto()
			tr, _, err := kernel.SubprocessExec(co, func() *procProto { return p }, "sleep", []string{"30"}, nil)
			if err != nil {
				return err
			}
			require.NoError(n, c.send(tr), "rule: a running child can be signalled")
			rc, err := tr.Wait(co)
			require.NoError(n, err)
			require.Equal(n, -int(c.sig), rc, "rule: a child killed by %v has return code minus the signal", c.sig)
			if err := n.waitUntil(co, "rule: ConnectionLost follows", func() bool { return p.lost }); err != nil {
				return err
			}
			n.checkOrder(p, 3)
		}
		return nil
	})
}

// pExitsBeforePipes: a child that exits while its output is still unread
// reports ProcessExited first; ConnectionLost waits for the pipes.
func pExitsBeforePipes(n *nt) {
	n.needTool("head")
	l := n.newLoop()
	n.run(l, "exit before the pipes close", func(co *kernel.Co) error {
		p := newProcProto()
		p.onMade = func(p *procProto) {
			p.tr.GetPipeTransport(1).(kernel.ReadTransport).PauseReading()
		}
		tr, _, err := kernel.SubprocessExec(co, func() *procProto { return p }, "head", []string{"-c", "32768", "/dev/zero"}, nil)
		if err != nil {
			return err
		}
		if err := n.waitUntil(co, "rule: the child's exit is seen while its stdout is unread", func() bool { return p.exited }); err != nil {
			return err
		}
		require.NoError(n, settleTurns(co, 5))
		assert.False(n, p.lost, "rule: ConnectionLost waits until every pipe is closed")
		assert.Equal(n, 0, p.n[1], "rule: a paused pipe delivers nothing")
		require.NoError(n, tr.GetPipeTransport(1).(kernel.ReadTransport).ResumeReading())
		if err := n.waitUntil(co, "rule: ConnectionLost follows the last pipe", func() bool { return p.lost }); err != nil {
			return err
		}
		assert.Equal(n, 32768, p.n[1], "rule: output written before the exit is all delivered")
		n.checkOrder(p, 3)
		return nil
	})
}

// pGrandchild: a grandchild that keeps stdout open keeps the transport
// open after the child's exit; its late output still arrives.
func pGrandchild(n *nt) {
	n.needTool("sh", "sleep")
	l := n.newLoop()
	n.run(l, "a grandchild keeps the pipe", func(co *kernel.Co) error {
		p := newProcProto()
		_, _, err := kernel.SubprocessShell(co, func() *procProto { return p }, "(sleep 0.3; echo late) & echo early", nil)
		if err != nil {
			return err
		}
		if err := n.waitUntil(co, "rule: the child's exit is seen", func() bool { return p.exited }); err != nil {
			return err
		}
		assert.False(n, p.lost, "rule: ConnectionLost waits for the grandchild to close the pipe")
		if err := n.waitUntil(co, "rule: ConnectionLost once the grandchild is done", func() bool { return p.lost }); err != nil {
			return err
		}
		assert.Equal(n, "early\nlate\n", p.out[1].String(), "rule: the grandchild's output arrives on the same pipe")
		n.checkOrder(p, 3)
		return nil
	})
}

// pSignalAfterExit: once the child is reaped, signals are refused with
// ErrProcessLookup (ESRCH), never sent to whoever has the pid now.
func pSignalAfterExit(n *nt) {
	n.needTool("true")
	l := n.newLoop()
	n.run(l, "signal after exit", func(co *kernel.Co) error {
		p := newProcProto()
		tr, _, err := kernel.SubprocessExec(co, func() *procProto { return p }, "true", nil, nil)
		if err != nil {
			return err
		}
		rc, err := tr.Wait(co)
		require.NoError(n, err)
		require.Equal(n, 0, rc)
		for _, send := range []func() error{tr.Terminate, tr.Kill, func() error { return tr.SendSignal(syscall.SIGHUP) }} {
			err := send()
			require.Error(n, err, "rule: a signal after the exit is refused")
			assert.ErrorIs(n, err, kernel.ErrProcessLookup)
			assert.ErrorIs(n, err, syscall.ESRCH)
			assert.Contains(n, err.Error(), fmt.Sprint(tr.GetPid()), "rule: the error names the pid")
		}
		return nil
	})
}

// pManyChildren: 200 children started at once are all reaped, leaving no
// zombie and no descriptor behind.
func pManyChildren(n *nt) {
	n.needTool("true")
	l := n.newLoop()
	const count = 200
	var before int
	kids := childPids()
	n.run(l, "200 children", func(co *kernel.Co) error {
		// Warm up (the loop's own descriptors, the driver's) before counting.
		if err := n.catOnceQuiet(co); err != nil {
			return err
		}
		before = openFDs(n)
		ps := make([]*procProto, count)
		trs := make([]kernel.SubprocessTransport, count)
		for i := range ps {
			ps[i] = newProcProto()
			tr, _, err := kernel.SubprocessExec(co, func() *procProto { return ps[i] }, "true", nil, nil)
			if err != nil {
				return err
			}
			trs[i] = tr
		}
		if err := n.waitUntil(co, "rule: every child is reaped and its transport finished", func() bool {
			for _, p := range ps {
				if !p.lost {
					return false
				}
			}
			return true
		}); err != nil {
			return err
		}
		for i, tr := range trs {
			rc, ok := tr.GetReturncode()
			assert.True(n, ok && rc == 0, "rule: child %d exited 0 (%d, %v)", i, rc, ok)
			assert.False(n, alive(tr.GetPid()) && isChild(tr.GetPid()), "rule: child %d (pid %d) is gone, not a zombie", i, tr.GetPid())
		}
		return nil
	})
	assert.Empty(n, zombies(kids), "rule: no zombie is left")
	// Other work in the process (a plugin supervisor's sweep, a runtime
	// thread) may hold a descriptor for a moment: wait for the count to come
	// back rather than sample it once.
	for deadline := time.Now().Add(5 * time.Second); openFDs(n) > before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	assert.LessOrEqual(n, openFDs(n), before, "rule: no descriptor is left (counted in /proc/self/fd)")
}

// catOnceQuiet runs a small cat round trip (warm-up).
func (n *nt) catOnceQuiet(co *kernel.Co) error { return n.catOnce(co, 10) }

// isChild reports whether pid is a child of this process.
func isChild(pid int) bool {
	for _, c := range children() {
		if strings.HasPrefix(c, fmt.Sprint(pid)+" ") {
			return true
		}
	}
	return false
}

// pReaderExits: writing to a child that stopped reading and exited ends
// stdin's transport with EPIPE; no SIGPIPE kills the process.
func pReaderExits(n *nt) {
	n.needTool("head")
	l := n.newLoop()
	n.run(l, "a reader that exits", func(co *kernel.Co) error {
		p := newProcProto()
		tr, _, err := kernel.SubprocessExec(co, func() *procProto { return p }, "head", []string{"-c", "1"}, nil)
		if err != nil {
			return err
		}
		in := tr.GetPipeTransport(0).(kernel.WriteTransport)
		// More than a pipe holds, so that data is still buffered when head
		// exits having read one byte.
		require.NoError(n, in.Write(pattern(4<<20)))
		if err := n.waitUntil(co, "rule: the transport finishes", func() bool { return p.lost }); err != nil {
			return err
		}
		require.Error(n, p.pipe[0], "rule: stdin's pipe is lost with an error when buffered data could not be written")
		assert.ErrorIs(n, p.pipe[0], syscall.EPIPE, "rule: that error is EPIPE")
		assert.Equal(n, 1, p.n[1])
		n.checkOrder(p, 3)
		return nil
	})
}

// openPty opens a pseudo-terminal pair: the master (non-blocking) and the
// slave.
func (n *nt) openPty() (master, slave *os.File) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		n.Skip(fmt.Sprintf("needs a pseudo-terminal: /dev/ptmx: %v", err))
	}
	rc, _ := m.SyscallConn()
	var num int
	var ierr error
	rc.Control(func(fd uintptr) {
		if ierr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ierr != nil {
			return
		}
		num, ierr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
	})
	n.fixture("unlock pty", ierr)
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", num), os.O_RDWR|syscall.O_NOCTTY, 0)
	n.fixture("open pty slave", err)
	n.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// pPty: a child on a pseudo-terminal; the master read through
// ConnectReadPipe and written through ConnectWritePipe (a dup of it).
func pPty(n *nt) {
	n.needTool("head")
	l := n.newLoop()
	n.run(l, "a pty", func(co *kernel.Co) error {
		master, slave := n.openPty()
		// The terminal echoes input; turn that off so only the child's
		// output comes back.
		rc, _ := slave.SyscallConn()
		rc.Control(func(fd uintptr) {
			if tio, err := unix.IoctlGetTermios(int(fd), unix.TCGETS); err == nil {
				tio.Lflag &^= unix.ECHO
				unix.IoctlSetTermios(int(fd), unix.TCSETS, tio)
			}
		})
		mc, _ := master.SyscallConn()
		wfd, err := -1, error(nil)
		mc.Control(func(fd uintptr) { wfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
		n.fixture("dup master", err)
		wmaster := os.NewFile(uintptr(wfd), "ptmx-w")
		p := newProcProto()
		opts := &kernel.SubprocessOptions{Stdin: kernel.StdioFile(slave), Stdout: kernel.StdioFile(slave), Stderr: kernel.StdioFile(slave), NewSession: true}
		tr, _, err := kernel.SubprocessExec(co, func() *procProto { return p }, "head", []string{"-n", "1"}, opts)
		if err != nil {
			return err
		}
		slave.Close() // the child has its copy; the master reads EIO once it is gone
		out := &recProto{keepOpen: true}
		_, _, err = kernel.ConnectReadPipe(co, func() *recProto { return out }, master)
		if err != nil {
			return err
		}
		in := &recProto{}
		wt, _, err := kernel.ConnectWritePipe(co, func() *recProto { return in }, wmaster)
		if err != nil {
			return err
		}
		require.NoError(n, wt.Write([]byte("hello pty\n")))
		rcode, err := tr.Wait(co)
		require.NoError(n, err)
		require.NoError(n, settleTurns(co, 3))
		require.Equal(n, 0, rcode, "the child said: %q", out.data.String())
		if err := n.waitUntil(co, "rule: the child's line comes back through the master", func() bool {
			return strings.Contains(out.data.String(), "hello pty")
		}); err != nil {
			return err
		}
		if err := n.waitUntil(co, "rule: the master's read transport ends once the child is gone", func() bool { return out.lost > 0 }); err != nil {
			return err
		}
		// Linux reports the end of a pty as EIO, which asyncio passes on.
		if out.lostErr != nil {
			assert.ErrorIs(n, out.lostErr, syscall.EIO, "rule: a pty ends in EIO or a clean EOF")
		}
		require.NoError(n, wt.Close())
		return nil
	})
}

// pErrors: a program that does not exist, one that cannot be executed, a
// bad working directory, a NUL byte and a closed loop each fail with an
// error naming the program, and leave nothing running.
func pErrors(n *nt) {
	l := n.newLoop()
	dir := n.tempDir()
	noexec := filepath.Join(dir, "noexec")
	n.fixture("write script", os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o600))
	before := childPids()
	var stale *kernel.Co
	n.run(l, "spawn errors", func(co *kernel.Co) error {
		stale = co
		for _, c := range []struct {
			prog string
			args []string
			opts *kernel.SubprocessOptions
			is   error
		}{
			{"no-such-program-loopkernel", nil, nil, fs.ErrNotExist},
			{"/no/such/dir/prog", nil, nil, fs.ErrNotExist},
			{dir, nil, nil, fs.ErrPermission},    // a directory
			{noexec, nil, nil, fs.ErrPermission}, // not executable
			{"/bin/sh", nil, &kernel.SubprocessOptions{Dir: filepath.Join(dir, "missing")}, fs.ErrNotExist},
			{"/bin/sh", []string{"a\x00b"}, nil, kernel.ErrInvalidArgument},
			{"", nil, nil, kernel.ErrInvalidArgument},
			{"/bin/sh", nil, &kernel.SubprocessOptions{Stdin: kernel.StdioStdout}, kernel.ErrInvalidArgument},
		} {
			p := newProcProto()
			_, _, err := kernel.SubprocessExec(co, func() *procProto { return p }, c.prog, c.args, c.opts)
			require.Error(n, err, "rule: %q cannot be run", c.prog)
			assert.ErrorIs(n, err, c.is, "rule: the error for %q wraps its cause", c.prog)
			assert.Contains(n, err.Error(), fmt.Sprintf("%q", c.prog), "rule: the error names the program")
			assert.Empty(n, p.events, "rule: a child that did not start tells its protocol nothing")
		}
		return nil
	})
	assert.Empty(n, newChildren(before), "rule: a failed start leaves no child, running or zombie")
	require.NoError(n, l.Close())
	// A coroutine handle kept from a task that ran before is the only way
	// to reach SubprocessExec on a closed loop.
	_, _, err := kernel.SubprocessExec(stale, newProcProto, "true", nil, nil)
	require.Error(n, err)
	assert.ErrorIs(n, err, kernel.ErrClosed, "rule: a closed loop refuses to start children")
	assert.Contains(n, err.Error(), `"true"`, "rule: the error names the program")
	assert.Empty(n, newChildren(before), "rule: a closed loop starts nothing")
}

// pStdioOptions: /dev/null, inherited streams, files, stderr merged into
// stdout, the working directory, the environment and the process group.
func pStdioOptions(n *nt) {
	n.needTool("sh")
	l := n.newLoop()
	dir := n.tempDir()
	n.run(l, "stdio and options", func(co *kernel.Co) error {
		// stderr into stdout, stdin from /dev/null, cwd and env.
		p := newProcProto()
		tr, _, err := kernel.SubprocessShell(co, func() *procProto { return p },
			`cat; echo out; echo err >&2; pwd; echo "$LK_VAR"`,
			&kernel.SubprocessOptions{Stdin: kernel.StdioDevNull, Stderr: kernel.StdioStdout, Dir: dir, Env: []string{"LK_VAR=set", "PATH=" + os.Getenv("PATH")}})
		if err != nil {
			return err
		}
		assert.Nil(n, tr.GetPipeTransport(0), "rule: no stdin pipe with StdioDevNull")
		assert.Nil(n, tr.GetPipeTransport(2), "rule: no stderr pipe with StdioStdout")
		if err := n.waitUntil(co, "rule: the child finishes", func() bool { return p.lost }); err != nil {
			return err
		}
		real, _ := filepath.EvalSymlinks(dir)
		assert.Equal(n, "out\nerr\n"+real+"\nset\n", p.out[1].String(), "rule: stderr merged into stdout, cwd and env applied, stdin empty")
		n.checkOrder(p, 1)

		// stdout into a file.
		f, err := os.Create(filepath.Join(dir, "out.txt"))
		n.fixture("create file", err)
		defer f.Close()
		p = newProcProto()
		tr, _, err = kernel.SubprocessShell(co, func() *procProto { return p }, "echo to-file", &kernel.SubprocessOptions{Stdin: kernel.StdioDevNull, Stdout: kernel.StdioFile(f), Stderr: kernel.StdioDevNull})
		if err != nil {
			return err
		}
		if _, err := tr.Wait(co); err != nil {
			return err
		}
		b, _ := os.ReadFile(f.Name())
		assert.Equal(n, "to-file\n", string(b), "rule: StdioFile writes to the file")

		// A process group of its own.
		p = newProcProto()
		tr, _, err = kernel.SubprocessExec(co, func() *procProto { return p }, "sleep", []string{"5"}, &kernel.SubprocessOptions{Setpgid: true})
		if err != nil {
			return err
		}
		pgid, err := unix.Getpgid(tr.GetPid())
		assert.NoError(n, err)
		assert.Equal(n, tr.GetPid(), pgid, "rule: Setpgid with Pgid 0 makes the child a group leader")
		tr.Close()
		rc, err := tr.Wait(co)
		require.NoError(n, err)
		assert.Equal(n, -int(syscall.SIGKILL), rc, "rule: Close kills a running child")
		return nil
	})
}

// pShellQuoting: SubprocessShell runs a shell; ShellQuote keeps a value one
// literal word.
func pShellQuoting(n *nt) {
	n.needTool("sh")
	l := n.newLoop()
	n.run(l, "shell quoting", func(co *kernel.Co) error {
		v := `it's $HOME; "quoted" | rm -rf /nonexistent * $(false)`
		p := newProcProto()
		tr, _, err := kernel.SubprocessShell(co, func() *procProto { return p }, "printf %s "+kernel.ShellQuote(v), nil)
		if err != nil {
			return err
		}
		rc, err := tr.Wait(co)
		require.NoError(n, err)
		require.Equal(n, 0, rc)
		if err := n.waitUntil(co, "rule: the child finishes", func() bool { return p.lost }); err != nil {
			return err
		}
		assert.Equal(n, v, p.out[1].String(), "rule: a ShellQuote'd value reaches the program unchanged")
		p = newProcProto()
		tr, _, err = kernel.SubprocessExec(co, func() *procProto { return p }, "printf", []string{"%s", v}, nil)
		if err != nil {
			return err
		}
		if err := n.waitUntil(co, "rule: the child finishes", func() bool { return p.lost }); err != nil {
			return err
		}
		assert.Equal(n, v, p.out[1].String(), "rule: SubprocessExec passes arguments without a shell")
		return nil
	})
}

// pCloseKills: Close kills a running child, closes its pipes, and
// ConnectionLost follows its exit.
func pCloseKills(n *nt) {
	n.needTool("sleep")
	l := n.newLoop()
	n.run(l, "close kills", func(co *kernel.Co) error {
		p := newProcProto()
		tr, _, err := kernel.SubprocessExec(co, func() *procProto { return p }, "sleep", []string{"30"}, nil)
		if err != nil {
			return err
		}
		require.NoError(n, tr.Close())
		assert.True(n, tr.IsClosing())
		if err := n.waitUntil(co, "rule: ConnectionLost after Close", func() bool { return p.lost }); err != nil {
			return err
		}
		rc, _ := tr.GetReturncode()
		assert.Equal(n, -int(syscall.SIGKILL), rc, "rule: Close kills the child")
		assert.False(n, isChild(tr.GetPid()), "rule: the killed child is reaped")
		n.checkOrder(p, 3)
		return nil
	})
}

// pLoopCloseReaps: closing the loop while a child runs kills and reaps it.
func pLoopCloseReaps(n *nt) {
	n.needTool("sleep")
	l := n.newLoop()
	fds := 0
	var pid int
	n.run(l, "start a child", func(co *kernel.Co) error {
		fds = openFDs(n)
		tr, _, err := kernel.SubprocessExec(co, newProcProto, "sleep", []string{"30"}, nil)
		if err != nil {
			return err
		}
		pid = tr.GetPid()
		return nil
	})
	require.NoError(n, l.Close())
	assert.False(n, isChild(pid), "rule: Loop.Close kills and reaps a running child: no zombie")
	// The driver's own descriptors go with the loop; the child's pipes and
	// pidfd must not stay.
	assert.LessOrEqual(n, openFDs(n), fds, "rule: Loop.Close leaves none of the child's descriptors")
}

// pWithoutWatch: on a driver without the watch capability the exit is
// waited for on a goroutine, with the same results.
func pWithoutWatch(n *nt) {
	n.needTool("cat", "sleep")
	l := n.newLoop(sdk.CapWatch)
	n.run(l, "no watch capability", func(co *kernel.Co) error {
		p := newProcProto()
		tr, _, err := kernel.SubprocessExec(co, func() *procProto { return p }, "cat", nil, nil)
		if err != nil {
			return err
		}
		in := tr.GetPipeTransport(0).(kernel.WriteTransport)
		require.NoError(n, in.Write(pattern(1<<20)))
		require.NoError(n, in.WriteEOF())
		if err := n.waitUntil(co, "rule: the child's exit is seen without the watch capability", func() bool { return p.lost }); err != nil {
			return err
		}
		assert.Equal(n, 1<<20, p.n[1])
		rc, _ := tr.GetReturncode()
		assert.Equal(n, 0, rc)
		n.checkOrder(p, 3)
		tr2, _, err := kernel.SubprocessExec(co, newProcProto, "sleep", []string{"30"}, nil)
		if err != nil {
			return err
		}
		require.NoError(n, tr2.Kill())
		rc, err = tr2.Wait(co)
		require.NoError(n, err)
		assert.Equal(n, -int(syscall.SIGKILL), rc)
		return nil
	})
}
