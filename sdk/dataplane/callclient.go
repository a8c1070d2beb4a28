package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// CallClient is the host side of a call plane: it sends resolver or
// executor calls to a plugin process and matches the results to them by
// call id, so any number of calls are in flight on one socket and are
// answered in whatever order the plugin finishes them. It implements
// sdk.Resolver and sdk.Executor; which of the two the plugin serves was
// settled by the hello exchange in NewCallClient.
//
// A CallClient lives as long as one plugin process. When the process dies
// (its end of the socket closes) every call in flight fails with an error
// wrapping both sdk.ErrBackendDied and ErrPeerGone, Done is closed, and a
// supervisor makes a new CallClient for the next process. A call made after
// the death fails with ErrPeerGone only: it never left this process, so it
// is safe to send again elsewhere.
type CallClient struct {
	cc   *callConn
	fam  Family
	name string
	log  hclog.Logger

	mu      sync.Mutex
	pending map[uint64]chan callMsg
	nextID  uint64
	err     error // why the plane stopped; set once, before done is closed
	done    chan struct{}
	reader  chan struct{} // closed when the reader goroutine has returned
	closed  atomic.Bool
}

var (
	_ sdk.Resolver = (*CallClient)(nil)
	_ sdk.Executor = (*CallClient)(nil)
)

// NewCallClient takes ownership of conn (the host end of Socketpair), says
// hello for family fam and starts reading results. On failure conn is
// closed.
func NewCallClient(conn *os.File, fam Family, logger hclog.Logger) (*CallClient, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	cc, err := newCallConn(conn)
	conn.Close() // cc holds its own descriptor for the socket
	if err != nil {
		return nil, err
	}
	c := &CallClient{
		cc:      cc,
		fam:     fam,
		log:     logger,
		pending: make(map[uint64]chan callMsg),
		done:    make(chan struct{}),
		reader:  make(chan struct{}),
	}
	if err := c.hello(); err != nil {
		cc.close()
		return nil, fmt.Errorf("dataplane: %s hello: %w", fam, err)
	}
	go c.read()
	return c, nil
}

// helloTimeout bounds the hello exchange, so that a plugin that started
// but never serves its call plane fails its start instead of hanging it.
var helloTimeout = 10 * time.Second

func (c *CallClient) hello() error {
	_ = c.cc.file.SetDeadline(time.Now().Add(helloTimeout))
	defer c.cc.file.SetDeadline(time.Time{})
	if err := c.cc.send(encodeCallMsg(ctHello, uint8(c.fam), 0, 0, nil, nil, nil, nil)); err != nil {
		return err
	}
	b, err := c.cc.recv()
	if err != nil {
		return err
	}
	m, err := decodeCallMsg(b)
	if err != nil {
		return err
	}
	if m.typ != ctHelloRepl || m.kind != uint8(c.fam) {
		return fmt.Errorf("%w: answered hello with type %#02x kind %d", ErrProtocol, m.typ, m.kind)
	}
	if m.status != stOK {
		return fmt.Errorf("plugin refused: %s: %w", m.a, unix.Errno(le.Uint32(m.fixed)))
	}
	c.name = string(m.a)
	return nil
}

// Name is the back-end name the plugin announced in its hello reply.
func (c *CallClient) Name() string { return c.name }

// Done is closed once the plane has stopped: the plugin died, broke the
// protocol, or Close was called. Err then says which.
func (c *CallClient) Done() <-chan struct{} { return c.done }

// Err is why the plane stopped, or nil while it runs.
func (c *CallClient) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// read dispatches results to their calls until the plane fails.
func (c *CallClient) read() {
	defer close(c.reader)
	for {
		b, err := c.cc.recv()
		var m callMsg
		if err == nil {
			m, err = decodeCallMsg(b)
		}
		if err == nil && m.typ != ctResult && m.typ != ctPong {
			err = fmt.Errorf("%w: plugin sent message type %#02x", ErrProtocol, m.typ)
		}
		if err != nil {
			c.stop(err)
			return
		}
		c.mu.Lock()
		ch, ok := c.pending[m.id]
		delete(c.pending, m.id)
		c.mu.Unlock()
		if !ok {
			// The caller gave up (cancelled) before the result came.
			c.log.Trace("dropping the result of an abandoned call", "id", m.id)
			continue
		}
		ch <- m
	}
}

// stop records why the plane ended and fails every call in flight.
func (c *CallClient) stop(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	pending := c.pending
	c.pending = nil
	close(c.done)
	c.mu.Unlock()
	c.cc.shutdown()
	for _, ch := range pending {
		close(ch) // the waiter reads c.err
	}
}

// callOp names a call in error messages. It is formatted only when an
// error is, so a call that succeeds spends nothing on its name.
type callOp struct{ verb, subject string }

func (o callOp) String() string {
	if o.subject == "" {
		return o.verb
	}
	return fmt.Sprintf("%s %q", o.verb, o.subject)
}

// roundTrip sends msg (its id field is filled in here) and waits for the
// answer.
func (c *CallClient) roundTrip(ctx context.Context, what callOp, msg []byte) (callMsg, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return callMsg{}, fmt.Errorf("%s: not sent: %w", what, notSent(err))
	}
	c.nextID++
	id := c.nextID
	ch := make(chan callMsg, 1)
	c.pending[id] = ch
	c.mu.Unlock()

	le.PutUint64(msg[8:], id)
	if err := c.cc.send(msg); err != nil {
		c.forget(id)
		// A failed send leaves the plane unusable (the peer is gone, or a
		// message went out in part), so it stops here. A call whose
		// frames did not all go is incomplete, and a plugin never runs an
		// incomplete call: it was not sent.
		c.stop(err)
		return callMsg{}, fmt.Errorf("%s: not sent: %w", what, notSent(err))
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return callMsg{}, fmt.Errorf("%s: %w: %w", what, sdk.ErrBackendDied, c.Err())
		}
		return m, nil
	case <-ctx.Done():
		if c.forget(id) {
			// Tell the plugin, so the function sees its context cancelled.
			_ = c.cc.send(encodeCallMsg(ctCancel, 0, 0, id, nil, nil, nil, nil))
		}
		return callMsg{}, fmt.Errorf("%s: %w", what, ctx.Err())
	}
}

// notSent keeps ErrPeerGone (for the supervisor's retry) on an error that
// kept a call from being sent.
func notSent(err error) error {
	if errors.Is(err, ErrPeerGone) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrPeerGone, err)
}

// forget removes a pending call; it reports whether it was still pending.
func (c *CallClient) forget(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.pending[id]
	delete(c.pending, id)
	return ok
}

// LastMoved is when a frame last went to or came from the plugin. A health
// check that pings reads it too: behind a large message a ping waits its
// turn in both directions, and frames still moving mean the plugin is busy,
// not hung.
func (c *CallClient) LastMoved() time.Time { return c.cc.lastMoved() }

// Ping is a round trip through the plugin's reader, which answers it
// without running any back-end code: a health check that a long call does
// not hold up.
func (c *CallClient) Ping(ctx context.Context) error {
	_, err := c.roundTrip(ctx, callOp{verb: "ping"}, encodeCallMsg(ctPing, 0, 0, 0, nil, nil, nil, nil))
	return err
}

// Getaddrinfo sends a getaddrinfo call (sdk.Resolver).
func (c *CallClient) Getaddrinfo(ctx context.Context, host, port string, hints sdk.AddrinfoHints) ([]sdk.Addrinfo, error) {
	what := callOp{"getaddrinfo", host}
	if len(host) > maxCallHost || len(port) > maxCallServ {
		return nil, &net.DNSError{Err: "name too long", Name: host, IsNotFound: true}
	}
	var fixed [16]byte
	le.PutUint32(fixed[0:], uint32(int32(hints.Family)))
	le.PutUint32(fixed[4:], uint32(int32(hints.SockType)))
	le.PutUint32(fixed[8:], uint32(int32(hints.Protocol)))
	le.PutUint32(fixed[12:], uint32(int32(hints.Flags)))
	m, err := c.roundTrip(ctx, what, encodeCallMsg(ctCall, kGetaddrinfo, 0, 0, fixed[:], []byte(host), []byte(port), nil))
	if err != nil {
		return nil, err
	}
	if err := c.resultErr(what, kGetaddrinfo, m); err != nil {
		return nil, err
	}
	return decodeAddrinfos(m.a, le.Uint32(m.fixed))
}

// Getnameinfo sends a getnameinfo call (sdk.Resolver).
func (c *CallClient) Getnameinfo(ctx context.Context, addr netip.AddrPort, flags int) (sdk.NameInfo, error) {
	what := callOp{"getnameinfo", addr.String()}
	var fixed [24]byte
	l, zone := putAddr(fixed[:16], addr.Addr())
	fixed[16] = l
	le.PutUint16(fixed[18:], addr.Port())
	le.PutUint32(fixed[20:], uint32(int32(flags)))
	if len(zone) > maxCallZone {
		return sdk.NameInfo{}, fmt.Errorf("%s: zone too long", what)
	}
	m, err := c.roundTrip(ctx, what, encodeCallMsg(ctCall, kGetnameinfo, 0, 0, fixed[:], []byte(zone), nil, nil))
	if err != nil {
		return sdk.NameInfo{}, err
	}
	if err := c.resultErr(what, kGetnameinfo, m); err != nil {
		return sdk.NameInfo{}, err
	}
	return sdk.NameInfo{Host: string(m.a), Service: string(m.b)}, nil
}

// Call sends an executor call (sdk.Executor): the function's name and its
// encoded argument; the result comes back as the plugin's RunFunc left it.
func (c *CallClient) Call(ctx context.Context, fn string, arg []byte) ([]byte, error) {
	what := callOp{"call", fn}
	if len(fn) > maxCallFunc {
		return nil, fmt.Errorf("%s: name longer than %d bytes: %w", what, maxCallFunc, sdk.ErrUnknownFunc)
	}
	if len(arg) > maxCallMessage-callHeaderLen-len(fn) {
		return nil, fmt.Errorf("%s: argument of %d bytes is over the call plane's %d", what, len(arg), maxCallMessage)
	}
	m, err := c.roundTrip(ctx, what, encodeCallMsg(ctCall, kFunc, 0, 0, nil, []byte(fn), arg, nil))
	if err != nil {
		return nil, err
	}
	if m.status == stFuncError {
		return nil, &sdk.CallError{Func: fn, Message: string(m.a)}
	}
	if err := c.resultErr(what, kFunc, m); err != nil {
		return nil, err
	}
	return m.a, nil
}

// resultErr turns a result that is not a success into the error the
// in-process back-end would have returned, as near as a wire allows.
func (c *CallClient) resultErr(what callOp, kind uint8, m callMsg) error {
	if m.typ != ctResult || m.kind != kind {
		err := fmt.Errorf("%w: %s answered with type %#02x kind %d", ErrProtocol, what, m.typ, m.kind)
		c.stop(err)
		return err
	}
	switch m.status {
	case stOK:
		return nil
	case stUnknownFunc:
		return fmt.Errorf("%s: %s: %w", what, m.a, sdk.ErrUnknownFunc)
	case stDNSError:
		f := le.Uint32(m.fixed)
		return &net.DNSError{Err: string(m.a), Name: string(m.b), Server: string(m.c),
			IsTimeout: f&dnsTimeout != 0, IsTemporary: f&dnsTemporary != 0, IsNotFound: f&dnsNotFound != 0}
	default: // stError
		if errno := unix.Errno(le.Uint32(m.fixed)); errno != 0 {
			return fmt.Errorf("%s: %s: %w", what, m.a, errno)
		}
		return fmt.Errorf("%s: %s", what, m.a)
	}
}

// Close says goodbye and closes the plane; calls in flight fail with an
// error wrapping ErrPeerGone (and sdk.ErrBackendDied: they did not finish),
// later ones with one wrapping ErrPeerGone.
func (c *CallClient) Close() error {
	if c.closed.Swap(true) {
		return fmt.Errorf("dataplane: close: %w", errCallClosed)
	}
	// A dead plugin cannot hear goodbye, and a full socket or a send in
	// progress (a hung plugin leaves one blocked) need not wait for it: the
	// shutdown that follows tells the plugin just as well, and releases
	// that send.
	if c.cc.sendMu.TryLock() {
		var bye [callHeaderLen]byte
		putCallHeader(bye[:], ctGoodbye, 0, 0, 0, 0, 0, 0)
		_ = c.cc.rc.Control(func(fd uintptr) {
			c.cc.out.fd = int(fd)
			_ = c.cc.out.send(bye[:], nil, unix.MSG_DONTWAIT)
		})
		c.cc.sendMu.Unlock()
	}
	c.stop(errCallClosed)
	<-c.reader
	return c.cc.close()
}

// errCallClosed is the reason recorded when the host closed the plane.
var errCallClosed = fmt.Errorf("%w (closed by the host)", ErrPeerGone)
