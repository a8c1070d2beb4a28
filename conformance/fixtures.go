package conformance

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/loopkernel/loopkernel/sdk"
	"golang.org/x/sys/unix"
)

// Descriptor fixtures. Every descriptor a case opens is recorded in c.owned
// and closed when the case ends, unless the case closed it first through
// closeFD; closing twice could close a number some other part of the process
// has reused in between.

func (c *C) own(fds ...int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, fd := range fds {
		c.owned[fd] = true
	}
}

// closeFD closes a fixture descriptor the case no longer wants.
func (c *C) closeFD(fd int) {
	c.mu.Lock()
	delete(c.owned, fd)
	c.mu.Unlock()
	if err := unix.Close(fd); err != nil {
		c.Errorf("fixture: close fd %d: %v", fd, err)
		c.FailNow()
	}
}

func (c *C) closeOwned() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for fd := range c.owned {
		unix.Close(fd)
	}
	c.owned = map[int]bool{}
}

// fixture fails the case when setting up its environment failed; such a
// failure is not the selector's fault and says so.
func (c *C) fixture(what string, err error) {
	if err != nil {
		c.Errorf("fixture: %s: %v (not a selector failure)", what, err)
		c.FailNow()
	}
}

// socketpair returns a connected, non-blocking AF_UNIX stream pair.
func (c *C) socketpair() (a, b int) {
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	c.fixture("socketpair", err)
	c.own(p[0], p[1])
	return p[0], p[1]
}

// pipe returns the read and write ends of a non-blocking pipe.
func (c *C) pipe() (r, w int) {
	var p [2]int
	c.fixture("pipe2", unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC))
	c.own(p[0], p[1])
	return p[0], p[1]
}

// regularFile returns a descriptor for a new, non-empty temporary file.
func (c *C) regularFile() int {
	dir, err := os.MkdirTemp("", "conformance-")
	c.fixture("temp dir", err)
	c.Cleanup(func() { os.RemoveAll(dir) })
	fd, err := unix.Open(filepath.Join(dir, "regular"), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	c.fixture("open temp file", err)
	c.own(fd)
	_, err = unix.Write(fd, []byte("data"))
	c.fixture("write temp file", err)
	return fd
}

// refusedConnect returns a non-blocking TCP socket whose connect to a closed
// loopback port is in progress or already failed, so that an error (and
// SO_ERROR=ECONNREFUSED) is pending on it.
func (c *C) refusedConnect() int {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	c.fixture("listen on loopback", err)
	port := l.Addr().(*net.TCPAddr).Port
	c.fixture("close listener", l.Close())
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	c.fixture("socket", err)
	c.own(fd)
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
	if err != nil && err != unix.EINPROGRESS && err != unix.ECONNREFUSED {
		c.fixture("connect to closed loopback port", err)
	}
	return fd
}

func (c *C) write(fd int, p []byte) {
	_, err := unix.Write(fd, p)
	c.fixture("write", err)
}

// fill writes to fd until it would block, so that it is not writable.
func (c *C) fill(fd int) {
	chunk := make([]byte, 4096)
	for {
		_, err := unix.Write(fd, chunk)
		if err == unix.EAGAIN {
			return
		}
		c.fixture("fill", err)
	}
}

// drain reads fd until it would block (or reaches EOF) and returns how many
// bytes it read.
func (c *C) drain(fd int) int {
	buf := make([]byte, 64<<10)
	total := 0
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EAGAIN || (err == nil && n == 0) {
			return total
		}
		c.fixture("drain", err)
		total += n
	}
}

// ensureNoFile makes sure the process may hold n more descriptors, raising the
// soft RLIMIT_NOFILE up to the hard limit if it must, and skips the case if
// even the hard limit is too low.
func (c *C) ensureNoFile(n int) {
	var lim unix.Rlimit
	c.fixture("getrlimit", unix.Getrlimit(unix.RLIMIT_NOFILE, &lim))
	want := uint64(n) + 256 // what the process already holds, with room
	if lim.Cur >= want {
		return
	}
	if lim.Max < want {
		c.Skip(fmt.Sprintf("needs RLIMIT_NOFILE of at least %d; the hard limit is %d", want, lim.Max))
	}
	lim.Cur = want
	c.fixture("setrlimit", unix.Setrlimit(unix.RLIMIT_NOFILE, &lim))
}

// Waiting helpers. Wait may legitimately return early with nothing (an
// interrupted wait returns 0, nil), so positive checks retry until a deadline
// and negative checks can only ever be made weaker by it, never flaky.

// settle is how long a positive check keeps waiting for a condition that
// should already hold. It only matters when the selector is broken.
const settle = 2 * time.Second

// waitOnce calls Wait once and returns the batch as a map, failing the case
// on an error, a batch larger than buf, or a token reported twice in one
// batch.
func (c *C) waitOnce(s sdk.Selector, buf []sdk.Event, timeout time.Duration) map[sdk.Token]sdk.Events {
	n, err := s.Wait(buf, timeout)
	if err != nil {
		c.Errorf("rule: Wait succeeds on a healthy selector: %v", err)
		c.FailNow()
	}
	if n < 0 || n > len(buf) {
		c.Errorf("rule: Wait fills at most len(events) entries: got n=%d for len %d", n, len(buf))
		c.FailNow()
	}
	got := make(map[sdk.Token]sdk.Events, n)
	for _, ev := range buf[:n] {
		if _, dup := got[ev.Token]; dup {
			c.Errorf("rule: one event per ready token per Wait, conditions merged: token %v appears twice in one batch", ev.Token)
			c.FailNow()
		}
		got[ev.Token] = ev.Events
	}
	return got
}

// timedWait is waitOnce, timed.
func (c *C) timedWait(s sdk.Selector, buf []sdk.Event, timeout time.Duration) time.Duration {
	start := time.Now()
	c.waitOnce(s, buf, timeout)
	return time.Since(start)
}

// earlyWaits checks that a Wait of d lasts (within slack) its timeout: it
// makes up to tries waits and returns how long the early ones lasted once
// limit of them have returned early, else nil. Some early returns are
// forgiven: a wait a signal interrupted returns early (a plugin process
// exiting sends SIGCHLD), and two in a row have been seen on a loaded
// machine. A selector early by a large part of its timeout is early every
// time, so a majority (limit 3 of 5) catches it whatever the load; one
// early by less than a scheduling delay (a sub-millisecond part rounded
// down) needs only limit 2 of many tries to be scheduled on time, where
// counting the waits that were long enough would let load hide it.
func earlyWaits(d, slack time.Duration, tries, limit int, wait func() time.Duration) []time.Duration {
	var early []time.Duration
	for range tries {
		if el := wait(); el < d-slack {
			early = append(early, el)
			if len(early) == limit {
				return early
			}
		}
	}
	return nil
}

// expect waits until tok is reported with any of the conditions in want,
// and returns what was reported for it. rule names the contract rule a
// timeout breaks.
func (c *C) expect(s sdk.Selector, tok sdk.Token, want sdk.Events, rule string) sdk.Events {
	buf := make([]sdk.Event, 64)
	deadline := time.Now().Add(settle)
	var last map[sdk.Token]sdk.Events
	for time.Now().Before(deadline) {
		last = c.waitOnce(s, buf, time.Until(deadline))
		if ev, ok := last[tok]; ok && ev&want != 0 {
			return ev
		}
	}
	c.Errorf("rule: %s: token %v was not reported with %v within %v (last batch: %v)", rule, tok, want, settle, last)
	c.FailNow()
	return 0
}

// notReported fails if tok is reported by a Wait of the given timeout.
func (c *C) notReported(s sdk.Selector, tok sdk.Token, timeout time.Duration, rule string) {
	got := c.waitOnce(s, make([]sdk.Event, 64), timeout)
	if ev, ok := got[tok]; ok {
		c.Errorf("rule: %s: token %v was reported with %v", rule, tok, ev)
		c.FailNow()
	}
}
