package streams_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/loopkernel/loopkernel/internal/certs"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/streams"
)

// An upper-casing line server and a client, on one loop.
func Example() {
	sel, err := selector.NewEpoll()
	if err != nil {
		panic(err)
	}
	loop := kernel.New(sel)
	defer loop.Close()

	shout := func(co *kernel.Co, r *streams.Reader, w *streams.Writer) error {
		defer w.Close()
		line, err := r.Readline(co)
		if err != nil {
			return err
		}
		w.Write([]byte(strings.ToUpper(string(line))))
		return w.Drain(co)
	}
	main, _ := kernel.CreateTask(loop, func(co *kernel.Co) (string, error) {
		srv, err := streams.StartServer(co, shout, "127.0.0.1", "0", nil)
		if err != nil {
			return "", err
		}
		defer srv.Close()
		port := strconv.Itoa(srv.Sockets()[0].LocalAddr().(*net.TCPAddr).Port)

		r, w, err := streams.OpenConnection(co, "127.0.0.1", port, nil)
		if err != nil {
			return "", err
		}
		defer w.Close()
		w.Write([]byte("hello, streams\n"))
		reply, err := r.Readline(co)
		return string(reply), err
	})
	if err := loop.RunUntilComplete(main); err != nil {
		panic(err)
	}
	reply, _ := main.Result()
	fmt.Print(reply)
	// Output: HELLO, STREAMS
}

// Go's io idioms over a stream: a bufio.Scanner reads lines through
// IOReader from inside a task.
func ExampleReader_IOReader() {
	sel, err := selector.NewEpoll()
	if err != nil {
		panic(err)
	}
	loop := kernel.New(sel)
	defer loop.Close()
	r := streams.NewReader(0)
	r.FeedData([]byte("one\ntwo\n"))
	r.FeedEOF()
	task, _ := kernel.CreateTask(loop, func(co *kernel.Co) (int, error) {
		sc := bufio.NewScanner(r.IOReader(co))
		n := 0
		for sc.Scan() {
			fmt.Println(sc.Text())
			n++
		}
		return n, sc.Err()
	})
	loop.RunUntilComplete(task)
	fmt.Println(task.Result())
	// Output:
	// one
	// two
	// 2 <nil>
}

// A STARTTLS exchange on streams: plaintext first, then both ends upgrade
// with Writer.StartTLS and go on over TLS.
func ExampleWriter_StartTLS() {
	sel, err := selector.NewEpoll()
	if err != nil {
		panic(err)
	}
	loop := kernel.New(sel)
	defer loop.Close()
	ca, err := certs.NewAuthority("example CA", time.Hour)
	if err != nil {
		panic(err)
	}
	leaf, err := ca.Issue(certs.Leaf{Hosts: []string{"localhost"}})
	if err != nil {
		panic(err)
	}
	serverTLS := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	clientTLS := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}

	upgrade := func(co *kernel.Co, r *streams.Reader, w *streams.Writer) error {
		defer w.Close()
		if _, err := r.Readline(co); err != nil { // "STARTTLS\n"
			return err
		}
		w.Write([]byte("GO AHEAD\n"))
		if err := w.StartTLS(co, serverTLS, nil); err != nil {
			return err
		}
		line, err := r.Readline(co)
		if err != nil {
			return err
		}
		w.Write([]byte("secured: " + string(line)))
		return w.Drain(co)
	}
	main, _ := kernel.CreateTask(loop, func(co *kernel.Co) (string, error) {
		srv, err := streams.StartServer(co, upgrade, "127.0.0.1", "0", nil)
		if err != nil {
			return "", err
		}
		defer srv.Close()
		port := strconv.Itoa(srv.Sockets()[0].LocalAddr().(*net.TCPAddr).Port)
		r, w, err := streams.OpenConnection(co, "127.0.0.1", port, nil)
		if err != nil {
			return "", err
		}
		defer w.Close()
		w.Write([]byte("STARTTLS\n"))
		if _, err := r.Readline(co); err != nil {
			return "", err
		}
		if err := w.StartTLS(co, clientTLS, nil); err != nil {
			return "", err
		}
		w.Write([]byte("hello\n"))
		line, err := r.Readline(co)
		return strings.TrimSpace(string(line)), err
	})
	loop.RunUntilComplete(main)
	fmt.Println(main.Result())
	// Output: secured: hello <nil>
}
