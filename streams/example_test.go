package streams_test

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"

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
