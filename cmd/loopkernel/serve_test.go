package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Real clients against `loopkernel serve`: curl and wrk against the HTTP
// server, socat and nc against echo and proxy, Python's asyncio client
// against echo. scripts/install-deps.sh installs them from Debian's packages;
// a test whose client is missing is skipped with the package named.

// startServe runs `loopkernel serve ARGS...` and returns its first listening
// address; the server is stopped with SIGTERM, and must exit 0, at cleanup.
func startServe(t *testing.T, args ...string) string {
	t.Helper()
	return startServeTo(t, os.Stderr, args...)
}

// startServeLogged is startServe with the server's log captured; the log is
// shown when the test fails.
func startServeLogged(t *testing.T, args ...string) (string, *syncBuffer) {
	t.Helper()
	log := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serve %v log:\n%s", args, log.String())
		}
	})
	return startServeTo(t, log, args...), log
}

func startServeTo(t *testing.T, stderr io.Writer, args ...string) string {
	t.Helper()
	return startServeCmd(t, exec.Command(binary, append([]string{"serve"}, args...)...), stderr, args...)
}

// startServeCmd is startServeTo for a command made by the caller (a shell
// that sets a limit first, say); args are for messages.
func startServeCmd(t *testing.T, cmd *exec.Cmd, stderr io.Writer, args ...string) string {
	t.Helper()
	cmd.Env = cleanEnv()
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	addrs := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "LISTENING "); ok {
				select {
				case addrs <- a:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			require.NoError(t, err, "serve %v must exit cleanly on SIGTERM", args)
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Errorf("serve %v did not shut down within 15s of SIGTERM", args)
		}
	})
	select {
	case a := <-addrs:
		return a
	case <-time.After(30 * time.Second):
		t.Fatalf("serve %v printed no LISTENING line", args)
		return ""
	}
}

func needTool(t *testing.T, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s not installed (Debian package %s; scripts/install-deps.sh installs it)", tool, pkg)
	}
	return p
}

func runTool(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %v: %s", name, args, out)
	return string(out)
}

func TestServeEchoWithRealClients(t *testing.T) {
	for _, pol := range []string{"epoll", "poll", "epoll-plugin"} {
		t.Run(pol, func(t *testing.T) {
			addr := startServe(t, "echo", "--addr", "127.0.0.1:0", "--policy", pol)
			host, port, _ := net.SplitHostPort(addr)

			socat := needTool(t, "socat", "socat")
			require.Equal(t, "hello through socat\n", runTool(t, "hello through socat\n", socat, "-t2", "-", "TCP:"+addr))

			nc := needTool(t, "nc", "netcat-openbsd")
			require.Equal(t, "hello through nc\n", runTool(t, "hello through nc\n", nc, "-q1", host, port))

			py := "/usr/bin/python3"
			if _, err := os.Stat(py); err != nil {
				t.Skip("/usr/bin/python3 not installed (Debian package python3)")
			}
			script := `
import asyncio, sys
async def main(host, port):
    r, w = await asyncio.open_connection(host, int(port))
    payload = bytes(range(256)) * 4096  # 1 MiB
    w.write(payload)
    await w.drain()
    got = await r.readexactly(len(payload))
    assert got == payload, "echo differs"
    w.write_eof()
    assert await r.read() == b"", "expected EOF after write_eof"
    w.close()
    await w.wait_closed()
    print("ok")
asyncio.run(main(sys.argv[1], sys.argv[2]))
`
			require.Equal(t, "ok\n", runTool(t, "", py, "-c", script, host, port))
		})
	}
}

func TestServeEchoUnixSocket(t *testing.T) {
	socat := needTool(t, "socat", "socat")
	path := filepath.Join(t.TempDir(), "echo.sock")
	startServe(t, "echo", "--addr", "unix:"+path)
	require.Equal(t, "over unix\n", runTool(t, "over unix\n", socat, "-t2", "-", "UNIX-CONNECT:"+path))
	abstract := fmt.Sprintf("@loopkernel-test-%d", os.Getpid())
	startServe(t, "echo", "--addr", "unix:"+abstract)
	require.Equal(t, "abstract\n", runTool(t, "abstract\n", socat, "-t2", "-", "ABSTRACT-CONNECT:"+abstract[1:]))
}

func TestServeHTTPWithCurlAndWrk(t *testing.T) {
	root := t.TempDir()
	big := strings.Repeat("0123456789abcdef", 64*1024) // 1 MiB, sent with sendfile(2)
	require.NoError(t, os.WriteFile(filepath.Join(root, "big.txt"), []byte(big), 0o644))
	addr := startServe(t, "http", "--addr", "127.0.0.1:0", "--root", root, "--loops", "2")

	curl := needTool(t, "curl", "curl")
	require.Equal(t, "Hello, World!\n", runTool(t, "", curl, "-sS", "http://"+addr+"/hello"))
	got := runTool(t, "", curl, "-sS", "http://"+addr+"/static/big.txt")
	require.Equal(t, len(big), len(got))
	require.True(t, got == big, "static file content differs")
	// Keep-alive: two requests, one connection.
	out := runTool(t, "", curl, "-sS", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects} ",
		"http://"+addr+"/hello", "http://"+addr+"/static/big.txt")
	require.Equal(t, "1 0 ", out, "the second request must reuse the connection")
	require.Equal(t, "404", runTool(t, "", curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://"+addr+"/nope"))
	require.Equal(t, "404", runTool(t, "", curl, "-s", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
		"http://"+addr+"/static/../../../../etc/passwd"))
	require.Equal(t, "405", runTool(t, "", curl, "-s", "-X", "DELETE", "-o", "/dev/null", "-w", "%{http_code}", "http://"+addr+"/"))

	wrk := needTool(t, "wrk", "wrk")
	out = runTool(t, "", wrk, "-t1", "-c20", "-d1s", "http://"+addr+"/hello")
	require.Regexp(t, regexp.MustCompile(`Requests/sec:\s+[0-9.]+`), out)
	require.NotContains(t, out, "Non-2xx")
	require.NotContains(t, out, "Socket errors")
}

func TestServeProxy(t *testing.T) {
	nc := needTool(t, "nc", "netcat-openbsd")
	echo := startServe(t, "echo", "--addr", "127.0.0.1:0")
	proxy := startServe(t, "proxy", "--addr", "127.0.0.1:0", "--upstream", echo)
	host, port, _ := net.SplitHostPort(proxy)
	require.Equal(t, "through the proxy\n", runTool(t, "through the proxy\n", nc, "-q1", host, port))

	// A large transfer both ways, with the client reading only after it
	// has written everything: back-pressure must hold, nothing may be lost.
	c, err := net.Dial("tcp", proxy)
	require.NoError(t, err)
	defer c.Close()
	payload := []byte(strings.Repeat("proxy!", 1<<20)) // 6 MiB
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	back, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, len(payload), len(back))
	require.True(t, string(back) == string(payload))
}

// syncBuffer collects a server's log while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitLog waits until the server has logged every one of parts on one line.
func waitLog(t *testing.T, log *syncBuffer, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(log.String(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the server logged no line with all of %q", parts)
}

// pyPeer is the raw-socket client of the limit tests, run with the
// system's Python: "exchange" sends steps (bytes, then a pause) and reads
// until the server closes or a wait passes; "slowloris" holds N connections
// that each send one header byte a second, and while they do, asks for
// /hello on a fresh connection.
const pyPeer = `
import json, selectors, socket, sys, time

def exchange(host, port, steps, wait):
    s = socket.create_connection((host, port))
    t0 = time.monotonic()
    out = {"resp": "", "closed": False, "reset": False, "send_error": "", "first": None, "last": None}
    got = b""
    for data, pause in steps:
        try:
            s.sendall(data.encode("latin1"))
        except OSError as e:
            out["send_error"] = str(e)
            break
        if pause:
            time.sleep(pause)
    s.settimeout(wait)
    try:
        while True:
            b = s.recv(65536)
            now = time.monotonic() - t0
            if not b:
                out["closed"] = True
                break
            got += b
            out["first"] = out["first"] if out["first"] is not None else now
            out["last"] = now
    except socket.timeout:
        pass
    except ConnectionResetError:
        out["reset"] = True
    out["elapsed"] = time.monotonic() - t0
    out["resp"] = got[:65536].decode("latin1")
    out["len"] = len(got)
    print(json.dumps(out))

def slowloris(host, port, n, timeout):
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    socks = [socket.create_connection((host, port)) for _ in range(n)]
    t0 = time.monotonic()
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    closed, sent, normal, next_send = {}, 0, None, t0
    while len(closed) < n and time.monotonic() - t0 < timeout * 3 + 5:
        now = time.monotonic()
        if now >= next_send:
            for i, s in enumerate(socks):
                if i not in closed:
                    try:
                        s.send(head[sent:sent + 1])
                    except OSError:
                        pass
            sent += 1
            next_send += 1.0
        if normal is None and now - t0 >= timeout / 2:
            c = socket.create_connection((host, port), timeout=5)
            c.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                b = c.recv(4096)
                if not b:
                    break
                data += b
            c.close()
            normal = {"at": time.monotonic() - t0, "resp": data.decode("latin1")}
        for key, _ in sel.select(timeout=0.02):
            try:
                b = key.fileobj.recv(4096)
            except ConnectionResetError:
                b = b""
            if not b:
                closed[key.data] = time.monotonic() - t0
                sel.unregister(key.fileobj)
    print(json.dumps({"closed": len(closed), "first_close": min(closed.values(), default=-1),
                      "last_close": max(closed.values(), default=-1), "bytes_sent": sent, "normal": normal}))

mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "exchange":
    exchange(host, port, json.loads(sys.argv[4]), float(sys.argv[5]))
else:
    slowloris(host, port, int(sys.argv[4]), float(sys.argv[5]))
`

func needPython(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("/usr/bin/python3 not installed (Debian package python3)")
	}
	return py
}

// step is one write of an exchange, and the pause after it.
type step struct {
	data  string
	pause time.Duration
}

type exchangeResult struct {
	Resp      string   `json:"resp"`   // the first 64 KiB
	Len       int      `json:"len"`    // bytes received in all
	Closed    bool     `json:"closed"` // the server closed (EOF), as opposed to the wait passing
	Reset     bool     `json:"reset"`
	SendError string   `json:"send_error"`
	First     *float64 `json:"first"` // seconds from connect to the first and last bytes received
	Last      *float64 `json:"last"`
	Elapsed   float64  `json:"elapsed"` // seconds from connect to EOF (or to giving up)
}

// status is the first status code in the response, or 0.
func (r exchangeResult) status() int {
	var code int
	fmt.Sscanf(r.Resp, "HTTP/1.1 %d", &code)
	return code
}

// exchange runs pyPeer's exchange against addr and waits up to wait after
// the last step for the server to close.
func exchange(t *testing.T, addr string, wait time.Duration, steps ...step) exchangeResult {
	t.Helper()
	py := needPython(t)
	host, port, _ := net.SplitHostPort(addr)
	js := [][]any{}
	for _, s := range steps {
		js = append(js, []any{s.data, s.pause.Seconds()})
	}
	arg, err := json.Marshal(js)
	require.NoError(t, err)
	out := runTool(t, "", py, "-c", pyPeer, "exchange", host, port, string(arg), fmt.Sprint(wait.Seconds()))
	var r exchangeResult
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	return r
}

const okHead = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"

// TestServeHTTPLimits: every limit of `serve http` fires against a real
// client, with its answer, its close, and its log line naming the peer.
// Timeouts are 1 s (the sweep ticks every 125 ms), so each fires between 1
// and 1.25 s plus scheduling noise; the bounds below allow 1 s of noise on a
// loaded machine and never allow early.
func TestServeHTTPLimits(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "in.txt"), []byte("inside\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("outside\n"), 0o644))
	require.NoError(t, os.Symlink("in.txt", filepath.Join(root, "rel-link")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(root, "abs-out")))
	require.NoError(t, os.Symlink("../"+filepath.Base(outside)+"/secret.txt", filepath.Join(root, "rel-out")))
	require.NoError(t, os.Symlink(outside, filepath.Join(root, "dir-out")))
	require.NoError(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	huge, err := os.Create(filepath.Join(root, "huge.bin"))
	require.NoError(t, err)
	require.NoError(t, huge.Truncate(64<<20)) // more than loopback's socket buffers can hold
	require.NoError(t, huge.Close())
	limits := []string{"--header-timeout", "1s", "--idle-timeout", "1s", "--body-timeout", "1s", "--send-timeout", "1s",
		"--max-body", "1000", "--max-headers", "10", "--max-header-bytes", "1024"}
	addr, log := startServeLogged(t, append([]string{"http", "--addr", "127.0.0.1:0", "--root", root}, limits...)...)
	follow := startServe(t, "http", "--addr", "127.0.0.1:0", "--root", root, "--follow-symlinks")
	const slack = 1.0 // seconds of scheduling noise allowed on a loaded machine

	t.Run("header timeout", func(t *testing.T) {
		t.Parallel()
		r := exchange(t, addr, 5*time.Second, step{data: "GET / HTTP/1.1\r\nHost: x\r\n"})
		require.True(t, r.Closed, "the server must close a connection whose head does not end: %+v", r)
		require.Equal(t, 408, r.status(), r.Resp)
		require.GreaterOrEqual(t, r.Elapsed, 1.0, "closed before the header timeout")
		require.Less(t, r.Elapsed, 1.25+slack)
		waitLog(t, log, "header timeout", "peer=127.0.0.1:", "head_bytes_received=25")
	})
	t.Run("header timeout from the accept", func(t *testing.T) {
		t.Parallel()
		r := exchange(t, addr, 5*time.Second)
		require.True(t, r.Closed, "a connection that never sends is closed: %+v", r)
		require.Empty(t, r.Resp, "no 408 to a connection that sent nothing")
		require.GreaterOrEqual(t, r.Elapsed, 1.0)
	})
	t.Run("idle keep-alive timeout", func(t *testing.T) {
		t.Parallel()
		r := exchange(t, addr, 5*time.Second, step{data: okHead, pause: 300 * time.Millisecond}, step{data: okHead})
		require.True(t, r.Closed, "%+v", r)
		require.Equal(t, 2, strings.Count(r.Resp, "200 OK"), "both requests answered on one connection: %q", r.Resp)
		require.NotNil(t, r.Last)
		idle := r.Elapsed - *r.Last
		require.GreaterOrEqual(t, idle, 1.0-0.05, "closed before the idle timeout (counted from the last response)")
		require.Less(t, idle, 1.25+slack)
		waitLog(t, log, "idle keep-alive timeout", "peer=127.0.0.1:")
	})
	t.Run("body timeout", func(t *testing.T) {
		t.Parallel()
		r := exchange(t, addr, 5*time.Second, step{data: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n0123456789"})
		require.True(t, r.Closed, "%+v", r)
		require.GreaterOrEqual(t, r.Elapsed, 1.0)
		require.Less(t, r.Elapsed, 1.25+slack)
		waitLog(t, log, "body timeout", "peer=127.0.0.1:", "body_bytes_missing=490")
	})
	t.Run("send timeout", func(t *testing.T) {
		t.Parallel()
		// The client asks for 64 MiB and reads nothing for 4 s: the server
		// gives up on it after the send timeout.
		r := exchange(t, addr, 5*time.Second, step{data: "GET /static/huge.bin HTTP/1.1\r\nHost: x\r\n\r\n", pause: 4 * time.Second})
		require.True(t, r.Closed || r.Reset, "%+v", r.Len)
		require.Less(t, r.Len, 64<<20, "the client did not get the whole file")
		waitLog(t, log, "send timeout", "peer=127.0.0.1:")
		// The send is cancelled before the connection is aborted; aborting
		// under an in-flight sendfile used to leave the server resetting
		// every connection it accepted afterwards.
		for i := 0; i < 5; i++ {
			r := exchange(t, addr, time.Second, step{data: okHead})
			require.Equal(t, 200, r.status(), "the server still answers after a send timeout: %+v", r)
		}
	})
	t.Run("slow head after a first request", func(t *testing.T) {
		t.Parallel()
		// The idle timeout must not be pushed back by a new head that
		// trickles in: once its first byte is in, the header timeout runs.
		r := exchange(t, addr, 5*time.Second, step{data: okHead, pause: 500 * time.Millisecond},
			step{data: "G", pause: 600 * time.Millisecond}, step{data: "E", pause: 600 * time.Millisecond}, step{data: "T"})
		require.True(t, r.Closed, "%+v", r)
		require.Contains(t, r.Resp, "408 Request Timeout")
		require.GreaterOrEqual(t, r.Elapsed, 0.5+1.0)
	})

	refusals := []struct {
		name, req string
		code      int
		why       string
	}{
		{"18-digit Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999999999\r\n\r\n", 413, "over the body limit"},
		{"unrepresentable Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413, "beyond any representable size"},
		{"body over the limit, sent", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + strings.Repeat("b", 5000), 413, "over the body limit"},
		{"conflicting lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, "conflicting Content-Length"},
		{"invalid length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3a\r\n\r\nabc", 400, "invalid Content-Length"},
		{"Transfer-Encoding with Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "Transfer-Encoding with Content-Length"},
		{"Transfer-Encoding not chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "not ending in chunked"},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, "chunked request bodies"},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400, "without exactly one Host"},
		{"too many header fields", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: 1\r\n", 10) + "\r\n", 431, "more header fields"},
		{"head too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 1100) + "\r\n\r\n", 431, "over the size limit"},
		{"head too large, unfinished", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 1100), 431, "over the size limit"},
	}
	for _, c := range refusals {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := exchange(t, addr, 5*time.Second, step{data: c.req})
			require.Equal(t, c.code, r.status(), "%q", r.Resp)
			require.True(t, r.Closed, "a refused request ends the connection: %+v", r)
			require.False(t, r.Reset, "the answer must not be lost to a reset")
			require.Less(t, r.Elapsed, 1.0, "refused at once, not on a timeout")
			waitLog(t, log, "request refused", "peer=127.0.0.1:", fmt.Sprintf("status=%d", c.code), c.why)
		})
	}
	t.Run("within limits", func(t *testing.T) {
		t.Parallel()
		r := exchange(t, addr, 300*time.Millisecond, step{data: "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nX-A: 1\r\n\r\n" +
			strings.Repeat("b", 1000) + okHead})
		require.Equal(t, 2, strings.Count(r.Resp, "200 OK"), "a body at the limit is discarded and the next request served: %q", r.Resp)
		require.False(t, r.Closed)
	})

	curl := needTool(t, "curl", "curl")
	code := func(base, p string) string {
		return runTool(t, "", curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "http://"+base+"/static/"+p)
	}
	t.Run("symlinks", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, "200", code(addr, "in.txt"))
		require.Equal(t, "200", code(addr, "rel-link"), "a link staying inside the root is followed")
		for _, p := range []string{"abs-out", "rel-out", "dir-out/secret.txt"} {
			require.Equal(t, "403", code(addr, p), "%s leaves the root", p)
			require.Equal(t, "200", code(follow, p), "%s with --follow-symlinks", p)
		}
		waitLog(t, log, "path leaves --root", "peer=127.0.0.1:", "path=dir-out/secret.txt")
		require.Equal(t, "404", code(addr, "fifo"), "a FIFO is not served, and opening it does not block the loop")
		require.Equal(t, "200", code(addr, "in.txt"), "the loop is still serving")
	})
}

// TestServeHTTPSlowloris: 50 connections sending one header byte a second
// are each closed by the server within the header timeout, while a normal
// request made during the attack is answered.
func TestServeHTTPSlowloris(t *testing.T) {
	for _, pol := range []string{"epoll", "epoll-plugin"} {
		t.Run(pol, func(t *testing.T) { slowloris(t, pol) })
	}
}

func slowloris(t *testing.T, policy string) {
	py := needPython(t)
	addr, log := startServeLogged(t, "http", "--addr", "127.0.0.1:0", "--header-timeout", "2s", "--policy", policy)
	host, port, _ := net.SplitHostPort(addr)
	out := runTool(t, "", py, "-c", pyPeer, "slowloris", host, port, "50", "2")
	var r struct {
		Closed     int     `json:"closed"`
		FirstClose float64 `json:"first_close"`
		LastClose  float64 `json:"last_close"`
		BytesSent  int     `json:"bytes_sent"`
		Normal     *struct {
			At   float64 `json:"at"`
			Resp string  `json:"resp"`
		} `json:"normal"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	require.Equal(t, 50, r.Closed, "every slow connection is closed by the server: %s", out)
	require.GreaterOrEqual(t, r.FirstClose, 2.0-0.1, "none closed before the header timeout: %s", out)
	require.Less(t, r.LastClose, 2.0+0.5+1.0, "all closed within the timeout plus two ticks and noise: %s", out)
	require.GreaterOrEqual(t, r.BytesSent, 2, "the connections were trickling: %s", out)
	require.NotNil(t, r.Normal, out)
	require.Contains(t, r.Normal.Resp, "200 OK", "a normal request during the attack is answered")
	require.Contains(t, r.Normal.Resp, "Hello, World!")
	require.Less(t, r.Normal.At, 2.0, "the normal request was answered while the attack was on")
	waitLog(t, log, "header timeout", "peer=127.0.0.1:")
}

// TestServeEchoAndProxyTimeouts: echo and proxy close idle connections,
// and the proxy gives up on an upstream that does not answer.
func TestServeEchoAndProxyTimeouts(t *testing.T) {
	echo, echoLog := startServeLogged(t, "echo", "--addr", "127.0.0.1:0", "--idle-timeout", "1s")
	// The proxy's upstream never times out (0 disables), so that it is the
	// proxy's own idle timeout that fires.
	upstream := startServe(t, "echo", "--addr", "127.0.0.1:0", "--idle-timeout", "0")
	proxy, proxyLog := startServeLogged(t, "proxy", "--addr", "127.0.0.1:0", "--upstream", upstream, "--idle-timeout", "1s")

	t.Run("echo idle", func(t *testing.T) {
		t.Parallel()
		r := exchange(t, echo, 5*time.Second, step{data: "ping", pause: 600 * time.Millisecond}, step{data: "pong"})
		require.Equal(t, "pingpong", r.Resp)
		require.True(t, r.Closed, "%+v", r)
		require.GreaterOrEqual(t, r.Elapsed-*r.Last, 1.0-0.05, "the idle timeout counts from the last data")
		require.Less(t, r.Elapsed-*r.Last, 1.25+1.0)
		waitLog(t, echoLog, "serve echo: idle timeout", "peer=127.0.0.1:")
	})
	t.Run("proxy idle", func(t *testing.T) {
		t.Parallel()
		r := exchange(t, proxy, 5*time.Second, step{data: "through", pause: 600 * time.Millisecond}, step{data: " twice"})
		require.Equal(t, "through twice", r.Resp)
		require.True(t, r.Closed, "%+v", r)
		require.GreaterOrEqual(t, r.Elapsed-*r.Last, 1.0-0.05)
		require.Less(t, r.Elapsed-*r.Last, 1.25+1.0)
		waitLog(t, proxyLog, "serve proxy: idle timeout", "peer=127.0.0.1:")
	})
	t.Run("proxy connect timeout", func(t *testing.T) {
		t.Parallel()
		stalled := stalledListener(t)
		p, plog := startServeLogged(t, "proxy", "--addr", "127.0.0.1:0", "--upstream", stalled, "--connect-timeout", "500ms")
		r := exchange(t, p, 5*time.Second, step{data: "anyone?"})
		// The client's unread bytes make the close a reset; either way the
		// server ended the connection.
		require.True(t, r.Closed || r.Reset, "%+v", r)
		require.Empty(t, r.Resp)
		require.GreaterOrEqual(t, r.Elapsed, 0.5)
		require.Less(t, r.Elapsed, 0.5+0.2+1.0)
		waitLog(t, plog, "upstream connect timeout", "peer=127.0.0.1:", "upstream="+stalled)
	})
}

// stalledListener returns the address of a loopback listener whose accept
// queue is full, so that a new connection's handshake is never answered.
func stalledListener(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	require.NoError(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, unix.Listen(fd, 0))
	sa, err := unix.Getsockname(fd)
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	for i := 0; i < 16; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr // the queue is full: handshakes now go unanswered
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("could not fill a listener's accept queue on loopback")
	return ""
}

// TestServeEchoEMFILE: with a descriptor limit of 64 and 150 clients the
// echo server pauses accepting, says which listener ran out, keeps the
// connections it has, and accepts again once clients leave; it never exits
// (startServe's cleanup requires a clean exit on SIGTERM).
func TestServeEchoEMFILE(t *testing.T) {
	sh := needTool(t, "sh", "dash")
	log := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serve log:\n%s", log.String())
		}
	})
	args := []string{"echo", "--addr", "127.0.0.1:0"}
	cmd := exec.Command(sh, append([]string{"-c", `ulimit -n 64 && exec "$0" serve "$@"`, binary}, args...)...)
	addr := startServeCmd(t, cmd, log, args...)

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 150; i++ {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		require.NoError(t, err, "the listen backlog takes the connection even when accept cannot")
		conns = append(conns, c)
	}
	waitLog(t, log, "accept on "+addr+" out of system resource", "pausing accepts", "laddr="+addr)
	// The first connections were accepted before the limit and still echo.
	conns[0].SetDeadline(time.Now().Add(5 * time.Second))
	_, err := conns[0].Write([]byte("still here"))
	require.NoError(t, err)
	buf := make([]byte, 10)
	_, err = io.ReadFull(conns[0], buf)
	require.NoError(t, err)
	require.Equal(t, "still here", string(buf))
	// Free descriptors: the server resumes accepting and serves a
	// latecomer from the backlog.
	for _, c := range conns[1:100] {
		c.Close()
	}
	last := conns[len(conns)-1]
	last.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = last.Write([]byte("late"))
	require.NoError(t, err)
	_, err = io.ReadFull(last, buf[:4])
	require.NoError(t, err, "a client that waited in the backlog is served once accepting resumes")
	require.Equal(t, "late", string(buf[:4]))
}
