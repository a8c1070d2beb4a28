package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socketpair creates the data-plane socket pair: AF_UNIX SOCK_SEQPACKET so
// every frame is one message (boundaries kept, each send atomic, which lets
// Wake send from another goroutine while the loop is mid-exchange). Both
// ends are close-on-exec and blocking; the host hands plugin to the child
// through exec.Cmd.ExtraFiles, which clears close-on-exec in the child only.
func Socketpair() (host, plugin *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("dataplane: socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "dataplane-host"), os.NewFile(uintptr(fds[1]), "dataplane-plugin"), nil
}

// sock is one end of the data plane driven by raw sendmsg/recvmsg. The
// Msghdr and Iovec live here rather than on the stack so a call allocates
// nothing: x/sys's Sendmsg/Recvmsg build sockaddrs and escape their
// arguments. A sock is used by one goroutine at a time (Wake uses sendWake,
// which touches no shared state).
type sock struct {
	fd  int
	msg unix.Msghdr
	iov unix.Iovec
}

// cmsgData is the offset of the payload inside a control message.
var cmsgData = unix.CmsgLen(0)

// oobSpace is the control buffer that holds maxFDsPerFrame descriptors.
var oobSpace = unix.CmsgSpace(4 * maxFDsPerFrame)

func (s *sock) setMsg(p, oob []byte) {
	s.msg = unix.Msghdr{}
	if len(p) > 0 {
		s.iov.Base = &p[0]
		s.iov.SetLen(len(p))
		s.msg.Iov = &s.iov
		s.msg.SetIovlen(1)
	}
	if len(oob) > 0 {
		s.msg.Control = &oob[0]
		s.msg.SetControllen(len(oob))
	}
}

// send sends one frame, with oob as its control data. A short send cannot
// happen on SOCK_SEQPACKET (the message goes whole or not at all).
func (s *sock) send(p, oob []byte, flags int) error {
	s.setMsg(p, oob)
	for {
		_, _, e := unix.Syscall(unix.SYS_SENDMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msg)), uintptr(flags|unix.MSG_NOSIGNAL))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return sockErr("sendmsg", e)
		}
		return nil
	}
}

// recv receives one frame into p and its control data into oob. Received
// descriptors are close-on-exec. n == 0 means the peer is gone (zero-length
// frames are forbidden by WIRE.md).
func (s *sock) recv(p, oob []byte, flags int) (n, oobn int, mflags int, err error) {
	s.setMsg(p, oob)
	for {
		r, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msg)), uintptr(flags|unix.MSG_CMSG_CLOEXEC))
		if e == unix.EINTR {
			continue
		}
		if e == unix.EAGAIN {
			return 0, 0, 0, errAgain
		}
		if e != 0 {
			return 0, 0, 0, sockErr("recvmsg", e)
		}
		return int(r), int(s.msg.Controllen), int(s.msg.Flags), nil
	}
}

// sendWake sends the 16-byte wake frame without blocking and without
// touching sock's shared Msghdr, so it is safe next to a running exchange.
func sendWake(fd int, frame *[headerLen]byte) error {
	for {
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&frame[0])), headerLen,
			unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			// The plugin's queue is full of frames it has not read yet; it
			// will see them (including earlier wakes) before blocking.
			return nil
		}
		return sockErr("send wake", e)
	}
}

// sockErr maps the errnos that mean "the other process is gone" to
// ErrPeerGone while keeping the errno reachable with errors.Is.
func sockErr(op string, e unix.Errno) error {
	switch e {
	case unix.EPIPE, unix.ECONNRESET, unix.ENOTCONN, unix.ECONNREFUSED:
		return fmt.Errorf("dataplane: %s: %w (%w)", op, ErrPeerGone, e)
	}
	return fmt.Errorf("dataplane: %s: %w", op, e)
}

// putRights writes an SCM_RIGHTS control message carrying fds into oob and
// returns the used prefix. oob must hold oobSpace bytes.
func putRights(oob []byte, fds []int) []byte {
	if len(fds) == 0 {
		return nil
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = unix.SOL_SOCKET
	h.Type = unix.SCM_RIGHTS
	h.SetLen(unix.CmsgLen(4 * len(fds)))
	for i, fd := range fds {
		binary.NativeEndian.PutUint32(oob[cmsgData+4*i:], uint32(int32(fd)))
	}
	return oob[:unix.CmsgSpace(4*len(fds))]
}

// errAgain is EAGAIN boxed once: a non-blocking drain ends with it on every
// wake, and boxing an Errno per call would allocate.
var errAgain error = unix.EAGAIN

var errBadCmsg = errors.New("malformed control message")

// parseRights appends every descriptor in the SCM_RIGHTS messages of oob to
// dst. Descriptors are appended even when an error is returned so the
// caller can close them; other control messages are skipped. It never reads
// past oob and never panics on malformed input.
func parseRights(oob []byte, dst []int) ([]int, error) {
	for len(oob) > 0 {
		if len(oob) < cmsgData {
			return dst, errBadCmsg
		}
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < cmsgData || l > len(oob) {
			return dst, errBadCmsg
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_RIGHTS {
			data := oob[cmsgData:l]
			for len(data) >= 4 {
				dst = append(dst, int(int32(binary.NativeEndian.Uint32(data))))
				data = data[4:]
			}
		}
		next := unix.CmsgSpace(l - cmsgData)
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return dst, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}
