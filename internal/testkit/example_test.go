package testkit_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/sdk"
)

// exampleT stands in for the *testing.T a test would pass; its cleanups
// run when the example calls done.
type exampleT struct{ cleanups []func() }

func (*exampleT) Helper()                           {}
func (*exampleT) Errorf(format string, args ...any) { fmt.Printf(format+"\n", args...) }
func (*exampleT) FailNow()                          { panic("test failed") }
func (t *exampleT) Cleanup(f func())                { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) done() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// A test gets a loop on a back-end by name, runs its body as a coroutine
// under the watchdog, and talks to an echo server over loopback.
func Example() {
	t := &exampleT{} // in a test: the *testing.T
	defer t.done()

	l := testkit.NewLoop(t, "poll")
	cli := &collector{}
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		srv, tr, err := testkit.EchoPair(co, cli)
		if err != nil {
			return struct{}{}, err
		}
		defer srv.Close()
		tr.Write([]byte("ping"))
		tr.WriteEOF()
		if err := testkit.Until(co, time.Second, func() bool { return cli.eof }); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, tr.Close()
	})
	fmt.Println(string(cli.got), err)
	// Output: ping <nil>
}

// Go reports a coroutine that does not finish in time, rather than hanging.
func ExampleGo() {
	t := &exampleT{}
	defer t.done()
	l := testkit.NewLoop(t, "")

	_, err := testkit.Go(l, 10*time.Millisecond, func(co *kernel.Co) (int, error) {
		return 0, co.Sleep(time.Hour)
	})
	fmt.Println(errors.Is(err, testkit.ErrNotFinished))
	// Output: true
}

// LoopOn takes a selector built elsewhere; SocketPair gives two connected
// kernel sockets for the sock_* calls.
func ExampleSocketPair() {
	t := &exampleT{}
	defer t.done()
	sel, err := sdk.Selectors.New("epoll")
	if err != nil {
		panic(err)
	}
	l := testkit.LoopOn(t, sel)
	a, b := testkit.SocketPair(t, unix.SOCK_SEQPACKET)

	got, err := testkit.Run(t, l, func(co *kernel.Co) (string, error) {
		if err := kernel.SockSendall(co, a, []byte("one message")); err != nil {
			return "", err
		}
		buf := make([]byte, 64)
		n, err := kernel.SockRecvInto(co, b, buf)
		return string(buf[:n]), err
	})
	fmt.Println(got, err)
	// Output: one message <nil>
}

// Blocking Go code runs off the loop while the coroutine waits: here a
// plain net dial of a server the loop serves.
func ExampleOffLoop() {
	t := &exampleT{}
	defer t.done()
	l := testkit.NewLoop(t, "")
	got, err := testkit.Run(t, l, func(co *kernel.Co) (string, error) {
		srv, err := kernel.CreateServer(co, func() *testkit.Echo { return testkit.NewEcho() }, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return "", err
		}
		defer srv.Close()
		port, err := testkit.Port(srv)
		if err != nil {
			return "", err
		}
		return testkit.OffLoop(co, func() (string, error) {
			c, err := net.Dial("tcp", "127.0.0.1:"+port)
			if err != nil {
				return "", err
			}
			defer c.Close()
			c.Write([]byte("ping"))
			b := make([]byte, 4)
			_, err = io.ReadFull(c, b)
			return string(b), err
		})
	})
	fmt.Println(got, err)
	// Output: ping <nil>
}
