package dataplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// errGoodbye ends Serve without error: the host closed the client.
var errGoodbye = errors.New("dataplane: host said goodbye")

// Serve answers the host on conn (the plugin end of Socketpair) using sel as
// the real selector, until the host says goodbye (nil), conn reaches EOF (an
// error wrapping ErrPeerGone), ctx is done (ctx.Err()), or the host breaks
// the protocol (an error wrapping ErrProtocol, after an error frame is sent).
//
// Serve registers conn's descriptor in sel under a reserved token, so a
// wake frame arriving mid-wait ends the wait. Before returning it
// unregisters every descriptor copy it holds from sel and closes it; it
// closes neither conn nor sel, which stay the caller's.
func Serve(ctx context.Context, conn *os.File, sel sdk.Selector, logger hclog.Logger) error {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	fd := int(conn.Fd())
	if err := ctx.Err(); err != nil {
		return err
	}
	// Shutting the socket down unblocks a recvmsg and makes the reserved
	// registration readable, so a cancelled ctx ends Serve promptly; the
	// host sees EOF.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		unix.Shutdown(fd, unix.SHUT_RDWR)
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
		}
	}()
	sv := &server{
		log:     logger,
		sel:     sel,
		s:       sock{fd: fd},
		fds:     make(map[sdk.Token]int),
		recvBuf: make([]byte, maxFrame+1),
		recvOOB: make([]byte, oobSpace),
		rights:  make([]int, 0, maxFDsPerFrame),
		sendBuf: make([]byte, maxFrame),
	}
	err := sv.run()
	sv.release()
	runtime.KeepAlive(conn)
	switch {
	case errors.Is(err, errGoodbye):
		return nil
	case ctx.Err() != nil && (err == nil || errors.Is(err, ErrPeerGone)):
		return ctx.Err()
	}
	return err
}

type server struct {
	log hclog.Logger
	sel sdk.Selector
	s   sock
	// fds holds the plugin's copy of every registered descriptor.
	fds         map[sdk.Token]int
	selfWatched bool
	wakePending bool
	yield       yielder // see yielder (yield.go)
	// errs are error records not yet delivered (a reply has room for
	// maxReplyRecords; the rest wait for the next one).
	errs    []errRecord
	events  []sdk.Event
	recvBuf []byte
	recvOOB []byte
	rights  []int
	sendBuf []byte
}

type errRecord struct {
	tok   sdk.Token
	errno unix.Errno
}

func (sv *server) run() error {
	// Wakes may precede hello when the host replaced a dead plugin and a
	// goroutine woke the loop meanwhile.
	for {
		f, err := sv.recv(0)
		if err != nil {
			return err
		}
		if f.typ == tWake {
			sv.wakePending = true
			continue
		}
		if f.typ == tGoodbye {
			return errGoodbye
		}
		if f.typ != tHello {
			return sv.violation(fmt.Errorf("%w: first frame has type %#02x, want hello", ErrProtocol, f.typ))
		}
		break
	}
	if err := sv.sel.Register(sv.s.fd, reservedToken, sdk.Read); err != nil {
		sv.sendError(0, err)
		return fmt.Errorf("dataplane: watch the data-plane socket: %w", err)
	}
	sv.selfWatched = true
	if err := sv.sendHello(); err != nil {
		return err
	}
	var batch uint32
	inBatch := false
	for {
		f, err := sv.recv(0)
		if err != nil {
			return err
		}
		switch f.typ {
		case tWake:
			sv.wakePending = true
			continue
		case tGoodbye:
			return errGoodbye
		case tHello:
			return sv.violation(fmt.Errorf("%w: second hello", ErrProtocol))
		}
		if inBatch && f.seq != batch {
			return sv.violation(fmt.Errorf("%w: request %d inside batch %d", ErrProtocol, f.seq, batch))
		}
		sv.apply(f)
		if f.flags&fMore != 0 {
			batch, inBatch = f.seq, true
			continue
		}
		inBatch = false
		if err := sv.waitAndReply(f); err != nil {
			return err
		}
		sv.yield.tick()
	}
}

// recv reads one frame; flags is 0 (block) or MSG_DONTWAIT. Descriptors
// that came with it are in sv.rights; on error they are already closed.
func (sv *server) recv(flags int) (hostFrame, error) {
	sv.rights = sv.rights[:0]
	n, oobn, mflags, err := sv.s.recv(sv.recvBuf, sv.recvOOB, flags)
	if err != nil {
		return hostFrame{}, err
	}
	var perr error
	if oobn > 0 {
		sv.rights, perr = parseRights(sv.recvOOB[:oobn], sv.rights)
	}
	// MSG_CTRUNC alone, with room for every descriptor a frame may carry,
	// means this process is out of descriptors: the kernel installed what
	// it could and dropped the rest. That is back-pressure, not a broken
	// host: the registrations left without one fail with EMFILE.
	short := mflags&unix.MSG_CTRUNC != 0 && mflags&unix.MSG_TRUNC == 0
	switch {
	case n == 0:
		closeAll(sv.rights)
		return hostFrame{}, fmt.Errorf("dataplane: recvmsg: %w (EOF)", ErrPeerGone)
	case perr != nil:
		perr = fmt.Errorf("%w: %w", ErrProtocol, perr)
	case mflags&unix.MSG_TRUNC != 0:
		perr = fmt.Errorf("%w: frame truncated (flags %#x)", ErrProtocol, mflags)
	}
	var f hostFrame
	if perr == nil {
		f, perr = decodeHostFrameFDs(sv.recvBuf[:n], len(sv.rights), short)
		if perr == nil && short && f.typ != tRequest {
			perr = fmt.Errorf("%w: control data truncated on a frame of type %#02x", ErrProtocol, f.typ)
		}
	}
	if perr != nil {
		closeAll(sv.rights)
		sv.rights = sv.rights[:0]
		if b := sv.recvBuf[:n]; n >= headerLen && le.Uint32(b) == magic && b[4] != Version {
			// Say so plainly, so the host can tell an old plugin from a broken one.
			sv.sendError(0, fmt.Errorf("host speaks data-plane version %d, plugin %d: %w", b[4], Version, unix.EPROTONOSUPPORT))
			return f, perr
		}
		return f, sv.violation(perr)
	}
	return f, nil
}

// violation tells the host why the plugin is giving up, then returns err.
func (sv *server) violation(err error) error {
	if errors.Is(err, ErrProtocol) {
		sv.log.Error("host broke the data-plane protocol", "error", err)
		sv.sendError(0, fmt.Errorf("%s: %w", err, unix.EPROTO))
	}
	return err
}

func (sv *server) sendHello() error {
	caps := sv.sel.Capabilities()
	maxFDs := caps.MaxFDs
	if maxFDs > 0 {
		maxFDs-- // the data-plane socket takes one slot
		if maxFDs == 0 {
			maxFDs = -1
		}
	}
	if budget := descriptorBudget(); budget > 0 && (maxFDs == 0 || budget < maxFDs) {
		maxFDs = budget
	}
	if maxFDs < 0 || maxFDs > 1<<31 {
		err := fmt.Errorf("dataplane: selector %q has room for nothing but the data plane", caps.Name)
		sv.sendError(0, fmt.Errorf("%w: %w", err, unix.ENOSPC))
		return err
	}
	name := caps.Name
	if len(name) > maxNameLen {
		name = name[:maxNameLen]
	}
	var flags uint32
	if caps.RegularFiles {
		flags |= capRegularFiles
	}
	b := sv.sendBuf
	putHeader(b, header{typ: tHelloReply, count: uint32(len(name))})
	le.PutUint32(b[16:], uint32(maxFDs))
	le.PutUint32(b[20:], flags)
	le.PutUint64(b[24:], 0)
	copy(b[headerLen+helloBody:], name)
	if err := sv.s.send(b[:headerLen+helloBody+len(name)], nil, 0); err != nil {
		return fmt.Errorf("dataplane: hello reply: %w", err)
	}
	return nil
}

// descriptorHeadroom is what descriptorBudget keeps back for the plugin's
// own later needs (a gRPC reconnect, a log file): small, because the
// budget must stay above what the host can accept, so that the host, not
// the plugin, runs out first (sdk/plugin keeps a larger reserve there).
const descriptorHeadroom = 4

// descriptorBudget is how many more descriptors this process may open:
// RLIMIT_NOFILE's soft limit, less those open now, less the headroom. A
// plugin holds a copy of every registered descriptor, so this bounds its
// registrations (0: unknown, no bound).
func descriptorBudget() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY || lim.Cur > 1<<30 {
		return 0
	}
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	// ReadDir's own descriptor is among those listed and closed again.
	return max(int(lim.Cur)-(len(open)-1)-descriptorHeadroom, 1)
}

// sendError sends an error frame for request seq; best effort, since it
// usually precedes giving up.
func (sv *server) sendError(seq uint32, err error) {
	msg := err.Error()
	if len(msg) > maxErrMsgLen {
		msg = msg[:maxErrMsgLen]
	}
	b := sv.sendBuf
	putHeader(b, header{typ: tError, count: uint32(len(msg)), seq: seq})
	le.PutUint32(b[16:], uint32(errnoOf(err)))
	le.PutUint32(b[20:], 0)
	copy(b[headerLen+errBody:], msg)
	if serr := sv.s.send(b[:headerLen+errBody+len(msg)], nil, 0); serr != nil {
		sv.log.Debug("could not report an error to the host", "error", err, "send", serr)
	}
}

// errnoOf picks the errno an error record or frame carries.
func errnoOf(err error) unix.Errno {
	var e unix.Errno
	switch {
	case errors.As(err, &e) && e != 0:
		return e
	case errors.Is(err, sdk.ErrExists):
		return unix.EEXIST
	case errors.Is(err, sdk.ErrNotRegistered):
		return unix.ENOENT
	case errors.Is(err, sdk.ErrSelectorClosed):
		return unix.EBADF
	}
	return unix.EIO
}

// apply performs a request's records in order. The k-th register record
// takes the k-th descriptor that came with the frame. A record that fails
// yields an error record and leaves the token unregistered here (its copy
// closed), which is the state the host assumes after seeing the error.
func (sv *server) apply(f hostFrame) {
	next, lost := 0, 0
	for i := 0; i < int(f.count); i++ {
		tok, in := recToken(f.recs, i), recInterest(f.recs, i)
		switch recOp(f.recs, i) {
		case opRegister:
			if next == len(sv.rights) {
				// Dropped by the kernel: this process has no descriptor
				// left to receive it in.
				lost++
				sv.errs = append(sv.errs, errRecord{tok: tok, errno: unix.EMFILE})
				continue
			}
			fd := sv.rights[next]
			next++
			if _, ok := sv.fds[tok]; ok {
				// The host never does this; if it did, its table is out of
				// step, so drop both and let the error record say so.
				unix.Close(fd)
				sv.drop(tok)
				sv.fail(tok, fmt.Errorf("register: token %w", sdk.ErrExists))
				continue
			}
			if err := sv.sel.Register(fd, tok, in); err != nil {
				unix.Close(fd)
				sv.fail(tok, err)
				continue
			}
			sv.fds[tok] = fd
		case opModify:
			if _, ok := sv.fds[tok]; !ok {
				sv.fail(tok, fmt.Errorf("modify: %w", sdk.ErrNotRegistered))
				continue
			}
			if err := sv.sel.Modify(tok, in); err != nil {
				sv.drop(tok)
				sv.fail(tok, err)
			}
		case opUnregister:
			if _, ok := sv.fds[tok]; !ok {
				sv.fail(tok, fmt.Errorf("unregister: %w", sdk.ErrNotRegistered))
				continue
			}
			sv.drop(tok)
		}
	}
	sv.rights = sv.rights[:0]
	if lost > 0 {
		sv.log.Warn("out of descriptors: registrations refused with EMFILE", "refused", lost)
	}
}

// drop removes a registration from the real selector, then closes the copy.
func (sv *server) drop(tok sdk.Token) {
	if err := sv.sel.Unregister(tok); err != nil {
		sv.log.Warn("real selector failed to unregister", "token", tok, "error", err)
	}
	unix.Close(sv.fds[tok])
	delete(sv.fds, tok)
}

func (sv *server) fail(tok sdk.Token, err error) {
	sv.log.Warn("registration change failed; reporting it to the host", "token", tok, "error", err)
	sv.errs = append(sv.errs, errRecord{tok: tok, errno: errnoOf(err)})
}

// waitAndReply runs the real wait for the request that ends a batch and
// sends the one reply.
func (sv *server) waitAndReply(f hostFrame) error {
	timeout := f.timeout
	if timeout < 0 {
		timeout = -1
	}
	if sv.wakePending || len(sv.errs) > 0 {
		timeout = 0
	}
	sv.wakePending = false
	nerr := min(len(sv.errs), maxReplyRecords)
	maxEv := min(int(f.maxEvents), maxReplyRecords-nerr)
	// Ask the real selector for no more than fits in the reply: an event it
	// returned and this side dropped would lose its turn in epoll's ready
	// rotation, and a steady drop can starve a registration. The data-plane
	// socket may take one of the slots; that costs a registration one Wait.
	want := max(maxEv, 1)
	if cap(sv.events) < want {
		sv.events = make([]sdk.Event, want)
	}
	n, err := sv.sel.Wait(sv.events[:want], timeout)
	if err != nil {
		sv.sendError(f.seq, fmt.Errorf("real selector wait: %w", err))
		if errors.Is(err, sdk.ErrSelectorClosed) {
			return fmt.Errorf("dataplane: real selector: %w", err)
		}
		return nil
	}
	b := sv.sendBuf
	recs := b[headerLen:]
	count := 0
	for _, e := range sv.errs[:nerr] {
		r := recs[count*recordLen:][:recordLen]
		le.PutUint64(r[0:], uint64(e.tok))
		le.PutUint32(r[8:], 0)
		le.PutUint32(r[12:], uint32(e.errno))
		count++
	}
	sv.errs = sv.errs[:copy(sv.errs, sv.errs[nerr:])]
	woken, ready := false, 0
	for _, e := range sv.events[:n] {
		if e.Token == reservedToken {
			w, err := sv.drain()
			if err != nil {
				return err
			}
			woken = woken || w
			continue
		}
		ev := e.Events & reportMask
		if _, ok := sv.fds[e.Token]; !ok || ev == 0 || ready == maxEv {
			continue
		}
		r := recs[count*recordLen:][:recordLen]
		le.PutUint64(r[0:], uint64(e.Token))
		le.PutUint32(r[8:], uint32(ev))
		le.PutUint32(r[12:], 0)
		count++
		ready++
	}
	var flags uint16
	if woken {
		flags = fWoken
	}
	putHeader(b, header{typ: tEvents, flags: flags, count: uint32(count), seq: f.seq})
	if err := sv.s.send(b[:headerLen+count*recordLen], nil, 0); err != nil {
		return fmt.Errorf("dataplane: reply: %w", err)
	}
	return nil
}

// drain reads every frame waiting on the data plane without blocking. Only
// wakes and goodbye may arrive while a request is outstanding.
func (sv *server) drain() (woken bool, err error) {
	for {
		f, err := sv.recv(unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return woken, nil
		}
		if err != nil {
			return woken, err
		}
		switch f.typ {
		case tWake:
			woken = true
		case tGoodbye:
			return woken, errGoodbye
		default:
			return woken, sv.violation(fmt.Errorf("%w: frame type %#02x while a request is outstanding", ErrProtocol, f.typ))
		}
	}
}

// release unregisters and closes every copy Serve holds.
func (sv *server) release() {
	for tok := range sv.fds {
		sv.drop(tok)
	}
	if sv.selfWatched {
		if err := sv.sel.Unregister(reservedToken); err != nil {
			sv.log.Debug("unregister the data-plane socket", "error", err)
		}
		sv.selfWatched = false
	}
	sv.rights = sv.rights[:0]
}
