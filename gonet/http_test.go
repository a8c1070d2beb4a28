package gonet_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/loopkernel/loopkernel/gonet"
	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/selector"
)

// hashHandler answers GET with a greeting and POST with the SHA-256 of the
// body, so a test can check a large upload arrived whole.
func hashHandler(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		h := sha256.New()
		if _, err := io.Copy(h, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, hex.EncodeToString(h.Sum(nil)))
		return
	}
	fmt.Fprintf(w, "hello from %s", r.URL.Path)
}

// serveHTTP serves h with net/http through a gonet listener on the
// coroutine's loop and returns the base URL and a stop function.
func serveHTTP(co *kernel.Co, h http.Handler) (string, func() error, error) {
	ln, err := gonet.Listen(co, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stop := func() error {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// onHTTP serves hashHandler through a gonet listener on a new loop and
// runs body off the loop (as an HTTP client runs) with the loop and the
// server's base URL; the server is stopped afterwards.
func onHTTP(t *testing.T, body func(l *kernel.Loop, base string) error) {
	t.Helper()
	onLoop(t, func(co *kernel.Co) error {
		base, stop, err := serveHTTP(co, http.HandlerFunc(hashHandler))
		if err != nil {
			return err
		}
		l := co.Loop()
		_, err = testkit.OffLoop(co, func() (struct{}, error) { return struct{}{}, body(l, base) })
		if serr := stop(); err == nil {
			err = serr
		}
		return err
	})
}

func TestNetHTTPServesThroughTheListenerToCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (scripts/install-deps.sh installs it)")
	}
	onHTTP(t, func(_ *kernel.Loop, base string) error {
		// Two requests on one keep-alive connection.
		out, err := exec.Command(curl, "-sS", "--max-time", "10", base+"/a", base+"/b").CombinedOutput()
		if err != nil {
			return fmt.Errorf("curl: %v: %s", err, out)
		}
		assert.Equal(t, "hello from /ahello from /b", string(out))

		body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		sum := sha256.Sum256(body)
		cmd := exec.Command(curl, "-sS", "--max-time", "10", "--data-binary", "@-", base+"/up")
		cmd.Stdin = bytes.NewReader(body)
		out, err = cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("curl upload: %v: %s", err, out)
		}
		assert.Equal(t, hex.EncodeToString(sum[:]), string(out))
		return nil
	})
}

func TestNetHTTPClientDialsThroughTheLoop(t *testing.T) {
	onHTTP(t, func(l *kernel.Loop, base string) error {
		tr := &http.Transport{DialContext: gonet.Dialer{Loop: l}.DialContext}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for i := range 20 {
			resp, err := client.Get(fmt.Sprintf("%s/%d", base, i))
			if err != nil {
				return err
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			assert.Equal(t, fmt.Sprintf("hello from /%d", i), string(b))
		}
		return nil
	})
}

// BenchmarkHTTP is one keep-alive GET through net/http's server on a gonet
// listener, and on Go's own net listener, with the same Go client, in the
// same run: the adapter's cost per request, said plainly.
func BenchmarkHTTP(b *testing.B) {
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	get := func(b *testing.B, base string) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		defer client.CloseIdleConnections()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			resp, err := client.Get(base + "/")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	b.Run("server=gonet", func(b *testing.B) {
		l := testkit.NewLoop(b, "")
		_, err := testkit.Go(l, time.Hour, func(co *kernel.Co) (struct{}, error) {
			base, stop, err := serveHTTP(co, hello)
			if err != nil {
				return struct{}{}, err
			}
			_, err = testkit.OffLoop(co, func() (struct{}, error) { get(b, base); return struct{}{}, nil })
			b.StopTimer()
			if serr := stop(); err == nil {
				err = serr
			}
			return struct{}{}, err
		})
		if err != nil {
			b.Fatal(err)
		}
	})
	b.Run("server=net", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: hello}
		go srv.Serve(ln)
		defer srv.Shutdown(context.Background())
		get(b, "http://"+ln.Addr().String())
	})
}

// Example serves net/http on the loop through a gonet listener and asks it
// once with Go's client.
func Example() {
	sel, err := selector.NewEpoll()
	if err != nil {
		panic(err)
	}
	l := kernel.New(sel)
	defer l.Close()
	task, _ := kernel.CreateTask(l, func(co *kernel.Co) (string, error) {
		ln, err := gonet.Listen(co, "tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "served on the loop")
		})}
		go srv.Serve(ln)
		defer srv.Close()
		// net code blocks, so it runs off the loop while the task waits.
		f, err := kernel.RunInExecutor(co.Loop(), nil, func(context.Context) (string, error) {
			resp, err := http.Get("http://" + ln.Addr().String() + "/")
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			return strings.TrimSpace(string(b)), err
		})
		if err != nil {
			return "", err
		}
		return f.Await(co)
	})
	l.RunUntilComplete(task)
	fmt.Println(task.Result())
	// Output: served on the loop <nil>
}

// A net/http client whose connections run on the loop: Dialer plugs the
// loop into http.Transport. Here the server is Go's own.
func ExampleDialer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello, loop")
	}))
	sel, err := selector.NewEpoll()
	if err != nil {
		panic(err)
	}
	l := kernel.New(sel)
	defer l.Close()
	client := &http.Client{Transport: &http.Transport{DialContext: gonet.Dialer{Loop: l}.DialContext}}
	task, _ := kernel.CreateTask(l, func(co *kernel.Co) (string, error) {
		f, err := kernel.RunInExecutor(co.Loop(), nil, func(context.Context) (string, error) {
			resp, err := client.Get("http://" + ln.Addr().String() + "/")
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			return string(b), err
		})
		if err != nil {
			return "", err
		}
		return f.Await(co)
	})
	l.RunUntilComplete(task)
	fmt.Println(task.Result())
	// Output: hello, loop <nil>
}
