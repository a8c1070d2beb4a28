package kernel_test

import (
	"fmt"
	"net"
	"strconv"

	"github.com/loopkernel/loopkernel/kernel"
)

// echoServerProtocol is the spec's TCP echo server protocol.
type echoServerProtocol struct{ tr kernel.Transport }

func (p *echoServerProtocol) ConnectionMade(t kernel.BaseTransport) {
	p.tr = t.(kernel.Transport)
	peer, _ := t.GetExtraInfo("peername")
	_ = peer // a real server would log it
}
func (p *echoServerProtocol) DataReceived(b []byte) {
	fmt.Printf("server received %q\n", b)
	p.tr.Write(b) // Write copies what the socket does not take at once
	p.tr.Close()
}
func (p *echoServerProtocol) EOFReceived() bool    { return false }
func (p *echoServerProtocol) ConnectionLost(error) {}

// echoClientProtocol sends one message and reports the answer.
type echoClientProtocol struct {
	msg  string
	done *kernel.Future[struct{}]
}

func (p *echoClientProtocol) ConnectionMade(t kernel.BaseTransport) {
	t.(kernel.Transport).Write([]byte(p.msg))
}
func (p *echoClientProtocol) DataReceived(b []byte) { fmt.Printf("client received %q\n", b) }
func (p *echoClientProtocol) EOFReceived() bool     { return false }
func (p *echoClientProtocol) ConnectionLost(err error) {
	fmt.Println("connection closed, error:", err)
	p.done.SetResult(struct{}{})
}

// The spec's TCP echo client and server, in one program: CreateServer and
// CreateConnection run inside a task, as `await loop.create_server(...)`
// and `transport, protocol = await loop.create_connection(...)` do.
func ExampleCreateConnection() {
	loop := newEpollLoop()
	defer loop.Close()

	main, _ := kernel.CreateTask(loop, func(co *kernel.Co) (struct{}, error) {
		srv, err := kernel.CreateServer(co, func() *echoServerProtocol { return &echoServerProtocol{} },
			[]string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return struct{}{}, err
		}
		defer srv.Close()
		port := srv.Sockets()[0].LocalAddr().(*net.TCPAddr).Port

		done := kernel.CreateFuture[struct{}](loop)
		_, _, err = kernel.CreateConnection(co, func() *echoClientProtocol {
			return &echoClientProtocol{msg: "Hello World!", done: done}
		}, "127.0.0.1", strconv.Itoa(port), nil)
		if err != nil {
			return struct{}{}, err
		}
		_, err = done.Await(co) // wait until the protocol signals the connection is lost
		return struct{}{}, err
	})
	if err := loop.RunUntilComplete(main); err != nil {
		fmt.Println("error:", err)
	}
	// Output:
	// server received "Hello World!"
	// client received "Hello World!"
	// connection closed, error: <nil>
}
