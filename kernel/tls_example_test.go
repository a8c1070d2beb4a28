package kernel_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/certs"
	"github.com/loopkernel/loopkernel/kernel"
)

// exampleTLS makes a throwaway CA and a certificate for 127.0.0.1.
func exampleTLS() (server, client *tls.Config) {
	ca, err := certs.NewAuthority("example CA", time.Hour)
	if err != nil {
		panic(err)
	}
	leaf, err := ca.Issue(certs.Leaf{Hosts: []string{"127.0.0.1", "localhost"}})
	if err != nil {
		panic(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}, &tls.Config{RootCAs: ca.Pool()}
}

// The echo client and server of ExampleCreateConnection over TLS: SSL on
// ServerOptions and ConnOptions is asyncio's ssl= argument. The protocols
// do not change; ConnectionMade runs once the handshake has succeeded.
func ExampleCreateServer_tls() {
	loop := newEpollLoop()
	defer loop.Close()
	serverTLS, clientTLS := exampleTLS()

	main, _ := kernel.CreateTask(loop, func(co *kernel.Co) (struct{}, error) {
		srv, err := kernel.CreateServer(co, func() *echoServerProtocol { return &echoServerProtocol{} },
			[]string{"127.0.0.1"}, "0", &kernel.ServerOptions{SSL: serverTLS})
		if err != nil {
			return struct{}{}, err
		}
		defer srv.Close()
		port := srv.Sockets()[0].LocalAddr().(*net.TCPAddr).Port

		done := kernel.CreateFuture[struct{}](loop)
		tr, _, err := kernel.CreateConnection(co, func() *echoClientProtocol {
			return &echoClientProtocol{msg: "Hello TLS!", done: done}
		}, "127.0.0.1", strconv.Itoa(port), &kernel.ConnOptions{SSL: clientTLS})
		if err != nil {
			return struct{}{}, err
		}
		version, _ := tr.GetExtraInfo("version")
		fmt.Println("negotiated", version)
		_, err = done.Await(co)
		return struct{}{}, err
	})
	if err := loop.RunUntilComplete(main); err != nil {
		fmt.Println("error:", err)
	}
	// Output:
	// negotiated TLS 1.3
	// server received "Hello TLS!"
	// client received "Hello TLS!"
	// connection closed, error: <nil>
}

// lineProto records what arrives and hands it to a waiting coroutine.
type lineProto struct {
	got chan string
}

func (p *lineProto) ConnectionMade(kernel.BaseTransport) {}
func (p *lineProto) DataReceived(b []byte)               { p.got <- string(b) }
func (p *lineProto) EOFReceived() bool                   { return false }
func (p *lineProto) ConnectionLost(error)                {}

// StartTLS upgrades a connection that began in plaintext, as a STARTTLS
// protocol does; here both ends of one socket pair upgrade at once.
func ExampleStartTLS() {
	loop := newEpollLoop()
	defer loop.Close()
	serverTLS, clientTLS := exampleTLS()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		panic(err)
	}
	a, _ := kernel.SocketFromFD(fds[0])
	b, _ := kernel.SocketFromFD(fds[1])
	main, _ := kernel.CreateTask(loop, func(co *kernel.Co) (string, error) {
		sp, cp := &lineProto{got: make(chan string, 1)}, &lineProto{got: make(chan string, 1)}
		st, _, err := kernel.ConnectAcceptedSocket(co, func() *lineProto { return sp }, a, nil)
		if err != nil {
			return "", err
		}
		ct, _, err := kernel.ConnectAcceptedSocket(co, func() *lineProto { return cp }, b, nil)
		if err != nil {
			return "", err
		}
		// The server's end upgrades in a task of its own while the client's
		// upgrades here: each waits for the other's handshake messages.
		server, _ := kernel.CreateTask(loop, func(co *kernel.Co) (kernel.Transport, error) {
			return kernel.StartTLS(co, st, sp, serverTLS, &kernel.StartTLSOptions{ServerSide: true})
		})
		host := "localhost"
		secure, err := kernel.StartTLS(co, ct, cp, clientTLS, &kernel.StartTLSOptions{ServerHostname: &host})
		if err != nil {
			return "", err
		}
		sSecure, err := server.Await(co)
		if err != nil {
			return "", err
		}
		defer sSecure.Close()
		defer secure.Close()
		secure.Write([]byte("now encrypted"))
		for len(sp.got) == 0 {
			if err := co.Sleep(time.Millisecond); err != nil {
				return "", err
			}
		}
		return <-sp.got, nil
	})
	loop.RunUntilComplete(main)
	fmt.Println(main.Result())
	// Output: now encrypted <nil>
}
