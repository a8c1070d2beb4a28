package proactorplane

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// FrameSize is the size of every frame on the control socket.
const FrameSize = 32

// Frame kinds.
const (
	// FrameHello (host -> plugin) carries three descriptors: the memfd,
	// the plugin's doorbell (host -> plugin), the host's doorbell (plugin
	// -> host). A is the plane's size.
	FrameHello uint8 = 1
	// FrameWelcome (plugin -> host): A is the plugin's pid, B zero if it
	// mapped the plane and set its ring up, else the errno that stopped it.
	FrameWelcome uint8 = 2
	// FrameRegister (host -> plugin) carries one descriptor; A is its
	// registration number. A REGISTER entry with the same number follows
	// in the submission ring.
	FrameRegister uint8 = 3
)

// FrameMagic opens every frame: "LKPF".
var FrameMagic = [4]byte{'L', 'K', 'P', 'F'}

// Frame is one message on the control socket (SOCK_SEQPACKET: one frame,
// one message).
type Frame struct {
	Kind uint8
	NFDs uint8
	A, B uint64
}

// fdsFor is how many descriptors each kind carries.
func fdsFor(kind uint8) (int, bool) {
	switch kind {
	case FrameHello:
		return 3, true
	case FrameWelcome:
		return 0, true
	case FrameRegister:
		return 1, true
	}
	return 0, false
}

// Put encodes f into b (FrameSize bytes).
func (f *Frame) Put(b []byte) {
	le := binary.LittleEndian
	_ = b[FrameSize-1]
	copy(b, FrameMagic[:])
	le.PutUint16(b[4:], Version)
	b[6], b[7] = f.Kind, f.NFDs
	le.PutUint64(b[8:], f.A)
	le.PutUint64(b[16:], f.B)
	clear(b[24:FrameSize])
}

// ParseFrame decodes and checks one frame: magic, version, kind, the
// descriptor count its kind carries, reserved bytes zero.
func ParseFrame(b []byte, f *Frame) error {
	if len(b) != FrameSize {
		return fmt.Errorf("%w: frame of %d bytes, want %d", ErrEntry, len(b), FrameSize)
	}
	if [4]byte(b[:4]) != FrameMagic {
		return fmt.Errorf("%w: frame magic %q", ErrEntry, b[:4])
	}
	le := binary.LittleEndian
	if v := le.Uint16(b[4:]); v != Version {
		return fmt.Errorf("%w: frame version %d, this side speaks %d", ErrLayout, v, Version)
	}
	*f = Frame{Kind: b[6], NFDs: b[7], A: le.Uint64(b[8:]), B: le.Uint64(b[16:])}
	n, ok := fdsFor(f.Kind)
	if !ok {
		return fmt.Errorf("%w: frame kind %d", ErrEntry, f.Kind)
	}
	if int(f.NFDs) != n {
		return fmt.Errorf("%w: frame kind %d says %d descriptors, carries %d", ErrEntry, f.Kind, f.NFDs, n)
	}
	for _, c := range b[24:FrameSize] {
		if c != 0 {
			return fmt.Errorf("%w: frame reserved bytes not zero", ErrEntry)
		}
	}
	return nil
}

// SendFrame sends f on the control socket sock with fds attached
// (SCM_RIGHTS); f.NFDs is set from fds.
func SendFrame(sock int, f Frame, fds ...int) error {
	var b [FrameSize]byte
	f.NFDs = uint8(len(fds))
	f.Put(b[:])
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	for {
		err := unix.Sendmsg(sock, b[:], oob, nil, unix.MSG_NOSIGNAL)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("proactor plane: send frame %d: %w", f.Kind, err)
		}
		return nil
	}
}

// RecvFrame receives one frame from sock into f and the descriptors it
// carries into fds (close-on-exec), returning how many. It blocks (waiting
// with poll when the socket is non-blocking). A frame whose descriptor
// count disagrees with what arrived fails, and the descriptors that did
// arrive are closed.
func RecvFrame(sock int, f *Frame, fds []int) (int, error) {
	var b [FrameSize + 1]byte
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, flags, _, err := unix.Recvmsg(sock, b[:], oob, unix.MSG_CMSG_CLOEXEC)
		switch err {
		case nil:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			pfd := []unix.PollFd{{Fd: int32(sock), Events: unix.POLLIN}}
			if _, err := unix.Poll(pfd, -1); err != nil && err != unix.EINTR {
				return 0, fmt.Errorf("proactor plane: poll control socket: %w", err)
			}
			continue
		default:
			return 0, fmt.Errorf("proactor plane: receive frame: %w", err)
		}
		if n == 0 {
			return 0, fmt.Errorf("proactor plane: control socket closed by the peer: %w", unix.ECONNRESET)
		}
		got, perr := ParseRights(oob[:oobn])
		k := copy(fds, got)
		for _, fd := range got[k:] {
			unix.Close(fd)
		}
		fail := func(err error) (int, error) {
			for _, fd := range fds[:k] {
				unix.Close(fd)
			}
			return 0, err
		}
		switch {
		case perr != nil:
			return fail(perr)
		case flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0:
			return fail(fmt.Errorf("%w: frame or its descriptors truncated (flags %#x)", ErrEntry, flags))
		}
		if err := ParseFrame(b[:n], f); err != nil {
			return fail(err)
		}
		if int(f.NFDs) != len(got) || k != len(got) {
			return fail(fmt.Errorf("%w: frame kind %d announced %d descriptors, %d arrived", ErrEntry, f.Kind, f.NFDs, len(got)))
		}
		return k, nil
	}
}

// ParseRights extracts the descriptors of the SCM_RIGHTS messages in oob.
func ParseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("%w: control message: %w", ErrEntry, err)
	}
	var fds []int
	for i := range msgs {
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return nil, fmt.Errorf("%w: control message: %w", ErrEntry, err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}
