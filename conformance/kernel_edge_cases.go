package conformance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/sdk"
)

// The loop's contract at its edges: what asyncio refuses when it is asked
// (a callback that is not callable, a descriptor a transport owns), what it
// saturates (deadlines at the ends of the clock), the order of its one ready
// queue, and which loop a coroutine sees. Each case ports the behaviour (not
// the code) of the CPython test named in its comment.
var kernelEdgeCases = []kcase{
	{name: "kernel/edge/nil-callback-refused", run: kEdgeNilCallback},
	{name: "kernel/edge/extreme-delays-saturate", run: kEdgeExtremeDelays},
	{name: "kernel/edge/threadsafe-ordered-with-call-soon", run: kEdgeThreadsafeOrder},
	{name: "kernel/edge/running-loop-inside-tasks", run: kEdgeRunningLoopInTask},
	{name: "kernel/edge/task-cannot-run-another-loop", run: kEdgeTaskOtherLoop},
	{name: "kernel/edge/executor-context", run: kEdgeExecutorContext},
}

// The same edges where they meet descriptors and sockets.
var netEdgeCases = []ncase{
	{name: "net/edge/transport-fd-refused", op: sdk.CapWatch, run: nEdgeTransportFD},
	{name: "net/edge/sock-recv-cancel-then-recv", run: nEdgeRecvRacing},
	{name: "net/edge/sock-recvfrom-cancel-then-recvfrom", run: nEdgeRecvfromRacing},
	{name: "net/edge/sock-accept-cancel-then-accept", run: nEdgeAcceptRacing},
	{name: "net/edge/sock-sendall-cancel-then-sendall", run: nEdgeSendRacing},
}

// kEdgeNilCallback ports test_base_events' test_call_soon_non_callable,
// test_call_later / test_call_at with a non-callable and
// test_run_in_executor's TypeError: a callback that cannot be called is
// refused when it is scheduled, not left to fail inside the loop later.
func kEdgeNilCallback(k *kt) {
	l := k.newLoop()
	ctx := context.Background()
	calls := map[string]func() error{
		"CallSoon":                  func() error { _, err := l.CallSoon(nil); return err },
		"CallLater":                 func() error { _, err := l.CallLater(time.Millisecond, nil); return err },
		"CallAt":                    func() error { _, err := l.CallAt(l.Time(), nil); return err },
		"CallSoonThreadsafe":        func() error { _, err := l.CallSoonThreadsafe(nil); return err },
		"CallSoonContext":           func() error { _, err := l.CallSoonContext(ctx, nil); return err },
		"CallLaterContext":          func() error { _, err := l.CallLaterContext(ctx, 0, nil); return err },
		"CallAtContext":             func() error { _, err := l.CallAtContext(ctx, l.Time(), nil); return err },
		"CallSoonThreadsafeContext": func() error { _, err := l.CallSoonThreadsafeContext(ctx, nil); return err },
		"RunInExecutor": func() error {
			_, err := kernel.RunInExecutor[int](l.Loop, nil, nil)
			return err
		},
	}
	for name, call := range calls {
		require.ErrorIs(k, call(), kernel.ErrNilCallback, "rule: %s refuses a nil callback when it is scheduled", name)
	}
	k.runOnce(l)
	time.Sleep(2 * time.Millisecond) // past the CallLater's deadline
	k.runOnce(l)
	require.NotContains(k, l.log.String(), "Exception in callback", "rule: a refused callback leaves nothing to fail in the loop")
}

// kEdgeExtremeDelays ports test_base_events' negative and huge delays
// (test_call_later_negative_delays, and _run_once's timeout kept within
// MAXIMUM_SELECT_TIMEOUT): deadlines saturate at the ends of the clock, so
// When is never negative nor wrapped, a deadline long past is due at once
// however late the loop looks at it, and one at the end of time keeps the
// loop asleep, not spinning.
func kEdgeExtremeDelays(k *kt) {
	l := k.newLoop()
	var fired []string
	add := func(name string) func() { return func() { fired = append(fired, name) } }
	far, err := l.CallLater(math.MaxInt64, add("later-max"))
	k.must(err, "CallLater(MaxInt64)")
	require.Equal(k, time.Duration(math.MaxInt64), far.When(), "rule: CallLater(MaxInt64) saturates at the end of the clock instead of wrapping")
	farAt, err := l.CallAt(math.MaxInt64, add("at-max"))
	k.must(err, "CallAt(MaxInt64)")
	require.Equal(k, time.Duration(math.MaxInt64), farAt.When())

	past, err := l.CallLater(math.MinInt64, add("later-min"))
	k.must(err, "CallLater(MinInt64)")
	require.GreaterOrEqual(k, past.When(), time.Duration(0), "rule: CallLater(MinInt64) gives a deadline that is not negative")
	require.LessOrEqual(k, past.When(), l.Time(), "rule: CallLater(MinInt64) is due at once")
	pastAt, err := l.CallAt(math.MinInt64, add("at-min"))
	k.must(err, "CallAt(MinInt64)")
	require.GreaterOrEqual(k, pastAt.When(), time.Duration(0), "rule: CallAt(MinInt64) gives a deadline that is not negative")

	// The loop looks at the past deadlines only after the clock moved on:
	// their distance from now must still come out as "due", not as a
	// wrapped-round wait of a day.
	time.Sleep(2 * time.Millisecond)
	l.rec.waits()
	k.runOnce(l)
	require.Equal(k, []string{"later-min", "at-min"}, fired, "rule: deadlines long past run at once, in the order scheduled, and the end of time does not")
	for _, w := range l.rec.waits() {
		require.Equal(k, time.Duration(0), w, "rule: with due timers the loop polls without waiting (timeouts: %v)", w)
	}
	waits := k.idleWaits(l, "only a timer at the end of time")
	require.Greater(k, waits[0], time.Duration(0), "rule: a timer at the end of time lets the loop sleep (timeouts: %v)", waits)
	require.LessOrEqual(k, waits[0], 24*time.Hour, "rule: one wait is capped however far the next timer is (timeouts: %v)", waits)
	require.Len(k, fired, 2, "rule: timers at the end of time never fire")

	// A due timer added while the far one is pending is not slept through.
	_, err = l.CallLater(time.Millisecond, l.Stop)
	k.must(err, "CallLater")
	start := time.Now()
	require.NoError(k, k.runForever(l, "a near timer behind a far one"))
	require.Less(k, time.Since(start), runLimit, "rule: a near timer is not slept through behind one at the end of time")
}

// kEdgeThreadsafeOrder ports test_base_events' call_soon_threadsafe
// ordering: asyncio has one ready queue, so a callback another thread
// scheduled before the loop's own call_soon runs first.
func kEdgeThreadsafeOrder(k *kt) {
	l := k.newLoop()
	var order []string
	add := func(s string) func() { return func() { order = append(order, s) } }
	_, err := l.CallSoon(func() {
		for i := range 3 {
			done := make(chan struct{})
			go func() {
				l.CallSoonThreadsafe(add("threadsafe-" + strconv.Itoa(i)))
				close(done)
			}()
			<-done // the other goroutine's call is made before ours
			l.CallSoon(add("call-soon-" + strconv.Itoa(i)))
		}
	})
	k.must(err, "CallSoon")
	k.runOnce(l)
	k.runOnce(l)
	require.Equal(k, []string{"threadsafe-0", "call-soon-0", "threadsafe-1", "call-soon-1", "threadsafe-2", "call-soon-2"}, order,
		"rule: CallSoonThreadsafe and CallSoon callbacks run in the order the calls were made")
}

// kEdgeRunningLoopInTask ports test_events' test_get_running_loop inside a
// coroutine (and asyncio.get_event_loop returning the running loop there):
// inside a task, before and after it suspends, and inside an async
// generator, RunningLoop is the loop running them; on other goroutines it
// is nil.
func kEdgeRunningLoopInTask(k *kt) {
	l := k.newLoop()
	var before, after, inGen *kernel.Loop
	foreign := make(chan *kernel.Loop, 1)
	_, err := runTask(k, l, func(co *kernel.Co) (struct{}, error) {
		before = kernel.RunningLoop()
		if err := co.Sleep(time.Millisecond); err != nil {
			return struct{}{}, err
		}
		after = kernel.RunningLoop()
		go func() { foreign <- kernel.RunningLoop() }()
		g, err := kernel.NewAsyncGen(l.Loop, func(co *kernel.Co, yield func(int) bool) error {
			inGen = kernel.RunningLoop()
			yield(1)
			return nil
		})
		if err != nil {
			return struct{}{}, err
		}
		_, _, err = g.Next(co)
		return struct{}{}, err
	})
	require.NoError(k, err)
	require.True(k, before == l.Loop, "rule: RunningLoop inside a task is its loop")
	require.True(k, after == l.Loop, "rule: RunningLoop inside a task that resumed is its loop")
	require.True(k, inGen == l.Loop, "rule: RunningLoop inside an async generator is its loop")
	require.Nil(k, <-foreign, "rule: RunningLoop on a goroutine the loop does not run is nil")
}

// kEdgeTaskOtherLoop ports test_events' "Cannot run the event loop while
// another loop is running" from inside a coroutine, in every mode: a task's
// goroutine acts for its loop.
func kEdgeTaskOtherLoop(k *kt) {
	l1, l2 := k.newLoop(), k.newLoop()
	l2.Stop()
	var other, same error
	_, err := runTask(k, l1, func(co *kernel.Co) (struct{}, error) {
		other, same = l2.RunForever(), l1.RunForever()
		return struct{}{}, nil
	})
	require.NoError(k, err)
	require.ErrorIs(k, other, kernel.ErrOtherLoopRunning, "rule: a task cannot run another loop inside its own")
	require.ErrorIs(k, same, kernel.ErrRunning, "rule: a task cannot run its own loop again")
}

// kEdgeExecutorContext: RunInExecutor's function gets a context that ends
// when its future is cancelled (asyncio cancels the concurrent future from
// the asyncio future's done callback; a Go function learns it from its
// context) and when the loop is closed.
func kEdgeExecutorContext(k *kt) {
	l := k.newLoop()
	started := make(chan struct{})
	ended := make(chan error, 1)
	f, err := kernel.RunInExecutor(l.Loop, nil, func(ctx context.Context) (int, error) {
		close(started)
		<-ctx.Done()
		ended <- ctx.Err()
		return 0, ctx.Err()
	})
	k.must(err, "RunInExecutor")
	<-started
	f.Cancel()
	k.runOnce(l) // the future's done callbacks run on the loop, as asyncio's
	select {
	case err := <-ended:
		require.ErrorIs(k, err, context.Canceled, "rule: cancelling the future cancels the function's context")
	case <-time.After(runLimit):
		require.Fail(k, "rule: cancelling RunInExecutor's future cancels the function's context")
	}

	l2 := k.newLoop()
	started2 := make(chan struct{})
	ended2 := make(chan error, 1)
	_, err = kernel.RunInExecutor(l2.Loop, nil, func(ctx context.Context) (int, error) {
		close(started2)
		<-ctx.Done()
		ended2 <- ctx.Err()
		return 0, nil
	})
	k.must(err, "RunInExecutor")
	<-started2
	require.NoError(k, l2.Close())
	select {
	case err := <-ended2:
		require.ErrorIs(k, err, context.Canceled, "rule: closing the loop cancels the context of its executor functions")
	case <-time.After(runLimit):
		require.Fail(k, "rule: closing the loop cancels the context of its executor functions")
	}
}

// nEdgeTransportFD ports asyncio's _ensure_fd_no_transport (test_events'
// add_reader/add_writer and sock_* on a transport's socket): a descriptor
// an open transport uses is refused with "File descriptor N is used by
// transport", and the transport keeps its data.
func nEdgeTransportFD(n *nt) {
	l := n.newLoop()
	client := &recvProto{}
	n.run(l, "transport's descriptor refused", func(co *kernel.Co) error {
		srv, tr, err := testkit.EchoPair(co, client)
		if err != nil {
			return err
		}
		defer srv.Close()
		defer tr.Close()
		v, _ := tr.GetExtraInfo("socket")
		sock, ok := v.(*kernel.Socket)
		if !ok {
			return fmt.Errorf("the transport's extra info \"socket\" is %T, not a *kernel.Socket", v)
		}
		fd := sock.Fd()
		want := fmt.Sprintf("file descriptor %d is used by transport", fd)
		for name, err := range map[string]error{
			"AddReader": l.AddReader(fd, func() {}),
			"AddWriter": l.AddWriter(fd, func() {}),
		} {
			require.ErrorIs(n, err, kernel.ErrFDUsedByTransport, "rule: %s on a transport's descriptor is refused", name)
			require.Contains(n, err.Error(), want, "rule: the refusal names the descriptor and the transport")
		}
		_, err = kernel.SockRecv(co, sock, 10)
		require.ErrorIs(n, err, kernel.ErrFDUsedByTransport, "rule: sock_recv on a transport's socket is refused")
		err = kernel.SockSendall(co, sock, []byte("x"))
		require.ErrorIs(n, err, kernel.ErrFDUsedByTransport, "rule: sock_sendall on a transport's socket is refused")
		if err := tr.Write([]byte("still mine")); err != nil {
			return err
		}
		return n.waitUntil(co, "the transport keeps receiving after the refusals", func() bool {
			return client.got() == "still mine"
		})
	})
}

// recvProto is a client protocol that keeps what it receives.
type recvProto struct {
	buf strings.Builder
}

func (p *recvProto) ConnectionMade(kernel.BaseTransport) {}
func (p *recvProto) ConnectionLost(error)                {}
func (p *recvProto) DataReceived(b []byte)               { p.buf.Write(b) }
func (p *recvProto) EOFReceived() bool                   { return false }
func (p *recvProto) got() string                         { return p.buf.String() }

// racing cancels a task waiting in a sock_* call and, without yielding,
// makes the same call again: it must wait for its completion like any call
// (test_sock_lowlevel's _basetest_sock_recv_racing and friends), not fail
// with ErrFDBusy because the cancelled call has not withdrawn yet.
func racing[T any](n *nt, l *kernel.Loop, what string, call func(co *kernel.Co) (T, error), feed func(co *kernel.Co) error) T {
	got, err := runT(n, l, what, func(co *kernel.Co) (T, error) {
		var zero T
		first, err := kernel.CreateTask(l, call)
		if err != nil {
			return zero, err
		}
		if err := co.Yield(); err != nil {
			return zero, err
		}
		if first.Done() {
			return zero, fmt.Errorf("the first call finished before it was cancelled")
		}
		first.Cancel()
		feeder, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) { return struct{}{}, feed(co) })
		if err != nil {
			return zero, err
		}
		v, err := call(co)
		if err != nil {
			return zero, err
		}
		if _, err := first.Await(co); !errors.Is(err, kernel.ErrCancelled) {
			return zero, fmt.Errorf("the first call ended with %v, want a cancellation", err)
		}
		if _, err := feeder.Await(co); err != nil {
			return zero, fmt.Errorf("the peer: %w", err)
		}
		return v, nil
	})
	require.NoError(n, err, "rule: %s: a call made right after a waiting one was cancelled waits for its own completion", what)
	return got
}

func nEdgeRecvRacing(n *nt) {
	l := n.newLoop()
	a, b := testkit.SocketPair(n, unix.SOCK_STREAM)
	got := racing(n, l, "sock_recv", func(co *kernel.Co) ([]byte, error) { return kernel.SockRecv(co, a, 100) },
		func(co *kernel.Co) error { return kernel.SockSendall(co, b, []byte("racing")) })
	assert.Equal(n, "racing", string(got), "rule: the second SockRecv gets the data")
	buf := make([]byte, 100)
	nb := racing(n, l, "sock_recv_into", func(co *kernel.Co) (int, error) { return kernel.SockRecvInto(co, a, buf) },
		func(co *kernel.Co) error { return kernel.SockSendall(co, b, []byte("into")) })
	assert.Equal(n, "into", string(buf[:nb]), "rule: the second SockRecvInto gets the data")
}

func nEdgeRecvfromRacing(n *nt) {
	l := n.newLoop()
	a, b := testkit.SocketPair(n, unix.SOCK_DGRAM)
	got := racing(n, l, "sock_recvfrom", func(co *kernel.Co) ([]byte, error) {
		data, _, err := kernel.SockRecvfrom(co, a, 100)
		return data, err
	}, func(co *kernel.Co) error {
		_, err := kernel.SockSendto(co, b, []byte("datagram"), nil)
		return err
	})
	assert.Equal(n, "datagram", string(got), "rule: the second SockRecvfrom gets the datagram")
}

func nEdgeAcceptRacing(n *nt) {
	l := n.newLoop()
	if c := l.Driver().Capabilities(); c.Family != "selector" {
		// Known gap: on a completion driver the cancelled accept may
		// already have taken the connection in the kernel, and the driver
		// drops it, so the second accept waits for a connection that is gone.
		n.Skip(fmt.Sprintf("a cancelled accept on the %s %s driver may consume the next connection (known gap)", c.Backend, c.Family))
	}
	ls, port := n.tcpListener()
	got := racing(n, l, "sock_accept", func(co *kernel.Co) (net.Addr, error) {
		s, peer, err := kernel.SockAccept(co, ls)
		if err == nil {
			s.Close()
		}
		return peer, err
	}, func(co *kernel.Co) error {
		c, err := kernel.NewSocket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		n.Cleanup(func() { c.Close() })
		return kernel.SockConnect(co, c, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	})
	assert.NotNil(n, got, "rule: the second SockAccept accepts the connection")
}

func nEdgeSendRacing(n *nt) {
	l := n.newLoop()
	a, b := testkit.SocketPair(n, unix.SOCK_STREAM)
	// Fill a's send buffer so that a SockSendall has to wait.
	filled := 0
	chunk := make([]byte, 64<<10)
	for {
		m, err := unix.Write(a.Fd(), chunk)
		if err != nil {
			require.ErrorIs(n, err, unix.EAGAIN, "filling the socket buffer")
			break
		}
		filled += m
	}
	tail := []byte("tail")
	racing(n, l, "sock_sendall", func(co *kernel.Co) (struct{}, error) {
		return struct{}{}, kernel.SockSendall(co, a, tail)
	}, func(co *kernel.Co) error {
		// Drain b until the tail arrived; the cancelled call sent nothing
		// (it was waiting for room), so the tail follows the filler.
		want := filled + len(tail)
		var last []byte
		for got := 0; got < want; {
			data, err := kernel.SockRecv(co, b, 64<<10)
			if err != nil {
				return err
			}
			if len(data) == 0 {
				return fmt.Errorf("EOF after %d of %d bytes", got, want)
			}
			got += len(data)
			last = append(last, data...)
			if len(last) > len(tail) {
				last = last[len(last)-len(tail):]
			}
		}
		if string(last) != string(tail) {
			return fmt.Errorf("the stream ended in %q, want %q", last, tail)
		}
		return nil
	})
}
