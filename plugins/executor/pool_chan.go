package executor

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The worker channel: a SOCK_SEQPACKET socket between the host and one
// worker that carries that worker's calls and answers (framing in
// pool_frame.go), so a call does not go through the call plane, whose
// reader and dispatcher goroutines cost four goroutine hand-offs per round
// trip. Both ends use blocking system calls on the calling goroutine: the
// worker reads a call, runs it and writes the answer on one goroutine, and
// the host's caller writes the call and waits in poll(2) on the channel, an
// eventfd its context's end writes to, and an eventfd the pool's Close
// writes to. A round trip is then one wake-up of each process, which is
// what Python's pool cannot do with its feeder and result threads.
//
// The call plane stays for what is not on the hot path: starting the
// worker, telling it to cancel a call (the worker's channel goroutine is
// running the function then, so it cannot read), health pings, and how a
// worker died (its supervisor reaps it).

// Errors of waiting for an answer; run turns each into the call's error.
var (
	errCancelled = errors.New("the call's context ended")
	errClosing   = errors.New("the pool is closing")
	errPeerGone  = errors.New("the worker's end of the channel closed")
	errTimeout   = errors.New("no answer in time")
	errNotYet    = errors.New("the answer is not whole yet")
)

// channel is one end of a worker channel. Only the goroutine that holds its
// worker uses it.
type channel struct {
	fd      int // the socket, blocking
	cancel  int // host: eventfd written when the call's context ends; -1 in the worker
	closing int // host: the pool's eventfd, written by Close (the pool's); -1 in the worker
	seq     uint32
	out     []byte // one packet being sent
	in      []byte // one packet received
	asm     assembler
	pfd     [3]unix.PollFd
}

func newChannel(fd, cancel, closing int) *channel {
	return &channel{fd: fd, cancel: cancel, closing: closing, out: make([]byte, maxPacket), in: make([]byte, maxPacket)}
}

// close releases the descriptors the channel owns (not the pool's).
func (c *channel) close() {
	if c.fd >= 0 {
		_ = unix.Close(c.fd)
		c.fd = -1
	}
	if c.cancel >= 0 {
		_ = unix.Close(c.cancel)
		c.cancel = -1
	}
}

// send writes msg as a message of kind for call seq.
func (c *channel) send(kind uint8, seq uint32, msg []byte) error {
	return packets(c.out, kind, seq, msg, c.write)
}

func (c *channel) write(p []byte) error {
	for {
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(c.fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		case unix.EPIPE, unix.ECONNRESET:
			return errPeerGone
		}
		return fmt.Errorf("writing to the worker channel: %w", e)
	}
}

// recv reads one packet into c.in and returns its length as the socket
// reports it (MSG_TRUNC: longer than c.in when it did not fit); 0 means
// the other end closed. flags may add MSG_DONTWAIT, which makes an empty
// socket errNotYet.
func (c *channel) recv(flags int) (int, error) {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(c.fd), uintptr(unsafe.Pointer(&c.in[0])), uintptr(len(c.in)), uintptr(unix.MSG_TRUNC|flags), 0, 0)
		switch e {
		case unix.EAGAIN:
			return 0, errNotYet
		case 0:
			if n == 0 {
				return 0, errPeerGone
			}
			return int(n), nil
		case unix.EINTR:
			continue
		case unix.ECONNRESET:
			return 0, errPeerGone
		}
		return 0, fmt.Errorf("reading the worker channel: %w", e)
	}
}

// readMessage reads a whole message of kind into c.asm.msg, blocking: the
// worker's way of reading its next call.
func (c *channel) readMessage(kind uint8) error {
	c.asm.reset(kind)
	for {
		n, err := c.recv(0)
		if err != nil {
			return err
		}
		done, err := c.asm.add(c.in, n, 0, true)
		if err != nil || done {
			return err
		}
	}
}

// receive waits for the answer to call seq and returns it (valid until the
// channel's next receive). Until the answer has begun, it also returns
// errCancelled when the call's context ends (if watchCancel), errClosing
// when the pool closes, and errTimeout after deadline (if not zero); once
// the answer has begun it reads it to its end, which the worker is
// sending.
func (c *channel) receive(seq uint32, watchCancel bool, deadline time.Time) ([]byte, error) {
	c.asm.reset(kindAnswer)
	for {
		if err := c.wait(watchCancel && !c.asm.started, deadline); err != nil {
			return nil, err
		}
		n, err := c.recv(0)
		if err != nil {
			return nil, err
		}
		done, err := c.asm.add(c.in, n, seq, false)
		if err != nil {
			return nil, err
		}
		if done {
			return c.asm.msg, nil
		}
	}
}

// poll is receive without blocking, for a call sent by StartCall (after
// c.asm.reset(kindAnswer)): it reads the packets of the answer to call seq
// that have arrived, and returns the answer once it is whole, errNotYet
// before that.
func (c *channel) poll(seq uint32) ([]byte, error) {
	for {
		n, err := c.recv(unix.MSG_DONTWAIT)
		if err != nil {
			return nil, err
		}
		done, err := c.asm.add(c.in, n, seq, false)
		if err != nil {
			return nil, err
		}
		if done {
			return c.asm.msg, nil
		}
	}
}

// wait blocks in poll(2) until the channel is readable (or closed), and
// reports the pool's Close, the call's cancellation or the deadline if one
// comes first. The channel wins a tie: an answer that is there is taken.
func (c *channel) wait(watchCancel bool, deadline time.Time) error {
	c.pfd[0] = unix.PollFd{Fd: int32(c.fd), Events: unix.POLLIN}
	c.pfd[1] = unix.PollFd{Fd: int32(c.closing), Events: unix.POLLIN}
	fds := c.pfd[:2]
	if watchCancel {
		c.pfd[2] = unix.PollFd{Fd: int32(c.cancel), Events: unix.POLLIN}
		fds = c.pfd[:3]
	}
	for {
		timeout := -1
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				left = 0
			}
			timeout = int((left + time.Millisecond - 1) / time.Millisecond)
		}
		n, err := unix.Poll(fds, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("waiting on the worker channel: %w", err)
		}
		switch {
		case fds[0].Revents != 0:
			return nil
		case fds[1].Revents != 0:
			return errClosing
		case len(fds) > 2 && fds[2].Revents != 0:
			return errCancelled
		case n == 0 && !deadline.IsZero() && !time.Now().Before(deadline):
			return errTimeout
		}
	}
}

// signalCancel wakes the caller waiting on the channel: the call's context
// ended. It runs from context.AfterFunc.
func (c *channel) signalCancel() { eventfdWrite(c.cancel) }

// drainCancel consumes a signalCancel, waiting for it if it is under way,
// so that the next call starts with the eventfd clear.
func (c *channel) drainCancel() {
	var b [8]byte
	for {
		if _, err := unix.Read(c.cancel, b[:]); err != unix.EINTR {
			return
		}
	}
}

func eventfdWrite(fd int) {
	b := [8]byte{1}
	for {
		if _, err := unix.Write(fd, b[:]); err != unix.EINTR {
			return
		}
	}
}

func newEventfd() (int, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("process pool: eventfd: %w", err)
	}
	return fd, nil
}

// How a worker's channel is set up. The host listens on a fresh abstract
// Unix socket (random name, so no file to clean up), sends the name in the
// worker's setup call over the call plane, and accepts the one connection,
// checking by SO_PEERCRED that it comes from the worker's pid. The plugin
// machinery passes no descriptors to a running worker, and a socket cannot
// be opened by /proc path as a memfd can.

// channelListener is the host's listening socket for one worker's channel.
type channelListener struct {
	fd   int
	name string // abstract: no leading NUL here; "@" marks it to x/sys
}

func listenChannel() (*channelListener, error) {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, fmt.Errorf("process pool: naming the worker channel: %w", err)
	}
	name := fmt.Sprintf("loopkernel-pool-%d-%s", os.Getpid(), hex.EncodeToString(r[:]))
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("process pool: worker channel socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: "@" + name}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("process pool: binding the worker channel: %w", err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("process pool: listening for the worker channel: %w", err)
	}
	return &channelListener{fd: fd, name: name}, nil
}

// accept takes the worker's connection, which its setup call made before
// it returned, and checks that it comes from pid. The socket it returns
// blocks.
func (l *channelListener) accept(pid int) (int, error) {
	fd, _, err := unix.Accept4(l.fd, unix.SOCK_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("process pool: worker %d did not connect its channel: %w", pid, err)
	}
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil || int(cred.Pid) != pid {
		unix.Close(fd)
		if err == nil {
			err = fmt.Errorf("connected from pid %d", cred.Pid)
		}
		return -1, fmt.Errorf("process pool: worker %d's channel: %w", pid, err)
	}
	return fd, nil
}

func (l *channelListener) close() { _ = unix.Close(l.fd) }

// dialChannel is the worker's side: it connects to the host's listener.
func dialChannel(name string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("process pool: worker channel socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: "@" + name}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("process pool: connecting the worker channel: %w", err)
	}
	return fd, nil
}
