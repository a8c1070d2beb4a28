package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// CallHandlers are the back-ends a plugin serves on a call plane. The
// host's hello names one family; the handler for it must be set.
type CallHandlers struct {
	// Name is the back-end's name, announced in the hello reply.
	Name     string
	Resolver sdk.Resolver
	Executor sdk.Executor
}

// ServeCalls is the plugin side of a call plane: it answers the host's
// hello, then runs every call on a goroutine of its own and sends each
// result when it is ready, so a slow call holds up no other. A CANCEL from
// the host cancels the call's context; a PING is answered at once by the
// reader, whatever the calls are doing.
//
// It returns nil when the host says goodbye, an error wrapping ErrPeerGone
// when the host goes away, ctx.Err() when ctx is done, and an error wrapping
// ErrProtocol when the host breaks the protocol. Calls still running then
// have their contexts cancelled; their results are dropped.
func ServeCalls(ctx context.Context, conn *os.File, h CallHandlers, logger hclog.Logger) error {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	cc, err := newCallConn(conn)
	if err != nil {
		return err
	}
	defer cc.close()
	stop := context.AfterFunc(ctx, cc.shutdown)
	defer stop()
	sv := &callServer{h: h, cc: cc, log: logger, inflight: make(map[uint64]context.CancelFunc)}
	err = sv.run(ctx)
	sv.mu.Lock()
	for _, cancel := range sv.inflight {
		cancel()
	}
	sv.inflight = nil
	sv.mu.Unlock()
	if ctx.Err() != nil && (err == nil || errors.Is(err, ErrPeerGone)) {
		return ctx.Err()
	}
	return err
}

type callServer struct {
	h   CallHandlers
	cc  *callConn
	log hclog.Logger
	fam Family

	mu       sync.Mutex
	inflight map[uint64]context.CancelFunc
}

func (sv *callServer) run(ctx context.Context) error {
	if err := sv.hello(); err != nil {
		return err
	}
	for {
		b, err := sv.cc.recv()
		if err != nil {
			return err
		}
		m, err := decodeCallMsg(b)
		if err != nil {
			return err
		}
		switch m.typ {
		case ctCall:
			if !sv.serves(m.kind) {
				return fmt.Errorf("%w: call of kind %d on a %s plane", ErrProtocol, m.kind, sv.fam)
			}
			cctx, ok := sv.begin(ctx, m.id)
			if !ok {
				return fmt.Errorf("%w: call id %d already in flight", ErrProtocol, m.id)
			}
			go sv.serve(cctx, m)
		case ctCancel:
			sv.mu.Lock()
			if cancel, ok := sv.inflight[m.id]; ok {
				cancel()
			}
			sv.mu.Unlock()
		case ctPing:
			if err := sv.cc.send(encodeCallMsg(ctPong, 0, 0, m.id, nil, nil, nil, nil)); err != nil {
				return err
			}
		case ctGoodbye:
			return nil
		default:
			return fmt.Errorf("%w: host sent message type %#02x", ErrProtocol, m.typ)
		}
	}
}

// begin records a call in flight, with the cancel a CANCEL from the host
// calls; a duplicate id is refused.
func (sv *callServer) begin(ctx context.Context, id uint64) (context.Context, bool) {
	cctx, cancel := context.WithCancel(ctx)
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if _, dup := sv.inflight[id]; dup {
		cancel()
		return nil, false
	}
	sv.inflight[id] = cancel
	return cctx, true
}

func (sv *callServer) hello() error {
	b, err := sv.cc.recv()
	if err != nil {
		return err
	}
	m, err := decodeCallMsg(b)
	if err != nil {
		return err
	}
	if m.typ != ctHello {
		return fmt.Errorf("%w: first message of type %#02x, want hello", ErrProtocol, m.typ)
	}
	sv.fam = Family(m.kind)
	if (sv.fam == FamilyResolver && sv.h.Resolver == nil) || (sv.fam == FamilyExecutor && sv.h.Executor == nil) {
		msg := fmt.Sprintf("this plugin serves no %s", sv.fam)
		_ = sv.cc.send(encodeCallMsg(ctHelloRepl, m.kind, stError, 0,
			le.AppendUint32(nil, uint32(unix.EPROTONOSUPPORT)), []byte(msg), nil, nil))
		return fmt.Errorf("dataplane: the host asked for a %s, which this plugin does not serve", sv.fam)
	}
	return sv.cc.send(encodeCallMsg(ctHelloRepl, m.kind, stOK, 0, nil, clip(sv.h.Name, maxCallName), nil, nil))
}

func (sv *callServer) serves(kind uint8) bool {
	if sv.fam == FamilyResolver {
		return kind == kGetaddrinfo || kind == kGetnameinfo
	}
	return kind == kFunc
}

// serve runs one call and sends its result, unless the plane has stopped.
func (sv *callServer) serve(ctx context.Context, m callMsg) {
	res := sv.result(ctx, m)
	sv.mu.Lock()
	cancel, live := sv.inflight[m.id]
	delete(sv.inflight, m.id)
	sv.mu.Unlock()
	if !live {
		return // the plane stopped meanwhile
	}
	cancel()
	if err := sv.cc.send(res); err != nil {
		sv.log.Debug("sending a result failed", "id", m.id, "error", err)
	}
}

// result runs the call in m and encodes its outcome.
func (sv *callServer) result(ctx context.Context, m callMsg) []byte {
	fail := func(err error) []byte { return encodeErr(m.kind, m.id, err) }
	switch m.kind {
	case kGetaddrinfo:
		hints := sdk.AddrinfoHints{
			Family:   int(int32(le.Uint32(m.fixed[0:]))),
			SockType: int(int32(le.Uint32(m.fixed[4:]))),
			Protocol: int(int32(le.Uint32(m.fixed[8:]))),
			Flags:    int(int32(le.Uint32(m.fixed[12:]))),
		}
		ais, err := sv.h.Resolver.Getaddrinfo(ctx, string(m.a), string(m.b), hints)
		if err != nil {
			return fail(err)
		}
		recs, err := encodeAddrinfos(ais)
		if err == nil && len(recs) > maxCallMessage-callHeaderLen-4 {
			err = errors.New("too many results for one message")
		}
		if err != nil {
			return fail(err)
		}
		return encodeCallMsg(ctResult, kGetaddrinfo, stOK, m.id, le.AppendUint32(nil, uint32(len(ais))), recs, nil, nil)
	case kGetnameinfo:
		addr := netip.AddrPortFrom(getAddr(m.fixed[:16], m.fixed[16], string(m.a)), le.Uint16(m.fixed[18:]))
		ni, err := sv.h.Resolver.Getnameinfo(ctx, addr, int(int32(le.Uint32(m.fixed[20:]))))
		if err != nil {
			return fail(err)
		}
		return encodeCallMsg(ctResult, kGetnameinfo, stOK, m.id, nil, clip(ni.Host, maxCallHost), clip(ni.Service, maxCallServ), nil)
	default: // kFunc
		out, err := sv.h.Executor.Call(ctx, string(m.a), m.b)
		if err != nil {
			return fail(err)
		}
		if len(out) > maxCallMessage-callHeaderLen {
			return fail(fmt.Errorf("result of %d bytes is over the call plane's %d", len(out), maxCallMessage))
		}
		return encodeCallMsg(ctResult, kFunc, stOK, m.id, nil, out, nil, nil)
	}
}

// encodeErr encodes a failed call: a function's own failure, an unknown
// function, a DNS error, or anything else as text and an errno.
func encodeErr(kind uint8, id uint64, err error) []byte {
	var (
		ce   *sdk.CallError
		dnse *net.DNSError
	)
	switch {
	case kind == kFunc && errors.As(err, &ce):
		return encodeCallMsg(ctResult, kind, stFuncError, id, nil, clip(ce.Message, maxCallText), nil, nil)
	case kind == kFunc && errors.Is(err, sdk.ErrUnknownFunc):
		return encodeCallMsg(ctResult, kind, stUnknownFunc, id, nil, clip(err.Error(), maxCallText), nil, nil)
	case kind != kFunc && errors.As(err, &dnse):
		fixed, a, b, c := dnsErrorFields(dnse)
		return encodeCallMsg(ctResult, kind, stDNSError, id, fixed, a, b, c)
	}
	var errno unix.Errno
	errors.As(err, &errno)
	return encodeCallMsg(ctResult, kind, stError, id, le.AppendUint32(nil, uint32(errno)), clip(err.Error(), maxCallText), nil, nil)
}
