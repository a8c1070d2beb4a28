package kernel

import (
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// Watching and reaping children.
//
// The normal path: the child's pidfd is opened in the loop's I/O driver
// and watched for readability (sdk.CapWatch), which the kernel reports
// when the child exits; the callback reaps it with waitid(P_PIDFD, WNOHANG)
// and closes the pidfd. The loop is the only reaper, so the pid stays the
// child's, and a signal sent through the pidfd cannot reach another
// process, until then.
//
// Without the watch capability (a completion driver lacking a poll
// operation), or on a kernel that gave no pidfd (before Linux 5.3), a
// goroutine waits for the exit instead, without reaping it (WNOWAIT), and
// hands it to the loop, which reaps it as above: the same guarantees, at
// the cost of a blocked thread per running child.
//
// Loop.Close with children running: each child that has not been reaped
// is killed with SIGKILL, its pipes are closed, and it is reaped on a
// goroutine; Close waits up to closeReapWait for those reaps (a killed
// process is normally gone in microseconds; one stuck in an uninterruptible
// sleep is reaped whenever it dies). No protocol method is called: the
// loop is closed. A child is never left a zombie, and the loop never
// leaves one running unwatched.

// closeReapWait bounds how long Loop.Close waits for killed children.
const closeReapWait = time.Second

// procTable is the loop's record of its children not yet finished, for
// Close.
type procTable struct {
	live map[*subprocessTransport]struct{}
}

func (p *procTable) add(t *subprocessTransport) {
	if p.live == nil {
		p.live = make(map[*subprocessTransport]struct{})
	}
	p.live[t] = struct{}{}
}

func (p *procTable) remove(t *subprocessTransport) { delete(p.live, t) }

// childInfo is the siginfo_t waitid fills for a child, with the fields of
// SIGCHLD's union member spelled out (unix.Siginfo leaves them opaque).
type childInfo struct {
	Signo, Errno, Code, _ int32
	Pid                   int32
	UID                   uint32
	Status                int32
	_                     [100]byte
}

const (
	cldExited = 1 // CLD_EXITED: Status is the exit status
	cldKilled = 2 // CLD_KILLED: Status is the signal
	cldDumped = 3 // CLD_DUMPED: killed, and dumped core
)

// unknownReturncode is what a child reaped by someone else reports
// (asyncio's 255, with a warning).
const unknownReturncode = 255

// returncode is asyncio's: the exit status, or minus the killing signal.
func (ci *childInfo) returncode() int {
	switch ci.Code {
	case cldKilled, cldDumped:
		return -int(ci.Status)
	}
	return int(ci.Status)
}

// waitChild calls waitid on the child (by pidfd when there is one, else by
// pid) with opts; it reports whether the child had exited.
func waitChild(pid, pidfd int, opts int) (childInfo, bool, error) {
	var ci childInfo
	idtype, id := unix.P_PID, pid
	if pidfd >= 0 {
		idtype, id = unix.P_PIDFD, pidfd
	}
	for {
		_, _, e := unix.Syscall6(unix.SYS_WAITID, uintptr(idtype), uintptr(id), uintptr(unsafe.Pointer(&ci)), uintptr(opts), 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case 0:
			return ci, ci.Pid != 0, nil
		}
		return ci, false, e
	}
}

// watchExit starts watching the child: its pidfd on the driver, or a
// goroutine (see above).
func (t *subprocessTransport) watchExit() {
	l := t.loop
	if t.pidfd >= 0 && l.drv.Capabilities().Has(sdk.CapWatch) {
		r, err := l.acquireIO(t.pidfd)
		if err == nil {
			if err = r.f.Watch(sdk.Read, t.exitReady); err == nil {
				t.watch = r
				return
			}
			l.releaseIO(r)
		}
		l.logger.Warn("cannot watch a child's pidfd on the I/O driver; waiting on a goroutine", "pid", t.pid, "error", err)
	}
	t.goWait = true
	pid, pidfd := t.pid, t.pidfd
	go func() {
		if _, _, err := waitChild(pid, pidfd, unix.WEXITED|unix.WNOWAIT); err != nil {
			l.logger.Warn("waiting for a child failed", "pid", pid, "error", err)
		}
		// If the loop is closed by now, Close has reaped the child (or
		// will): nothing more to do here.
		l.CallSoonThreadsafe(t.exitReady)
	}()
}

// exitReady runs on the loop when the child may have exited: it reaps the
// child (without waiting) and reports the exit.
func (t *subprocessTransport) exitReady() {
	if t.exited || t.pidfd < 0 && t.pid <= 0 {
		return
	}
	ci, done, err := waitChild(t.pid, t.pidfd, unix.WEXITED|unix.WNOHANG)
	rc := 0
	switch {
	case err == unix.ECHILD:
		// Someone else reaped it (a wait(-1) elsewhere in the process).
		t.loop.logger.Warn("unknown child process: it was reaped elsewhere; reporting returncode 255", "pid", t.pid)
		rc = unknownReturncode
	case err != nil:
		t.loop.logger.Warn("reaping a child failed", "pid", t.pid, "error", err)
		return
	case !done:
		return // not yet: a spurious wakeup
	default:
		rc = ci.returncode()
	}
	t.stopWatching()
	t.processExited(rc)
}

// stopWatching takes the pidfd out of the driver and closes it.
func (t *subprocessTransport) stopWatching() {
	if t.watch != nil {
		t.watch.f.Unwatch(sdk.Read)
		t.loop.releaseIO(t.watch)
		t.watch = nil
	}
	if t.pidfd >= 0 {
		unix.Close(t.pidfd)
		t.pidfd = -1
	}
}

// closeAll is Loop.Close's part: every child not yet reaped is killed, its
// pipes closed, and it is reaped on a goroutine, waited for up to
// closeReapWait.
func (p *procTable) closeAll(l *Loop) {
	if len(p.live) == 0 {
		return
	}
	var wg sync.WaitGroup
	for t := range p.live {
		for i, pt := range t.pipes {
			if pt != nil && !t.pipeDone[i] {
				t.pipeDone[i] = true
				pt.connLost, pt.lostDone = true, true
				pt.releaseIO()
				pt.closeOwned()
			}
		}
		if t.exited {
			continue
		}
		t.signal(unix.SIGKILL)
		if t.watch != nil {
			t.watch.f.Unwatch(sdk.Read)
			l.releaseIO(t.watch)
			t.watch = nil
		}
		t.exited = true // for the loop's purposes: nothing more will run
		pid, pidfd := t.pid, t.pidfd
		t.pidfd = -1
		wg.Add(1)
		go func() {
			defer wg.Done()
			waitChild(pid, pidfd, unix.WEXITED)
			if pidfd >= 0 {
				unix.Close(pidfd)
			}
		}()
	}
	p.live = nil
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeReapWait):
		l.logger.Warn("loop closed while killed children are still exiting; they are reaped when they do")
	}
}
