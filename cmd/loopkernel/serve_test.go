package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Real clients against `loopkernel serve`: curl and wrk against the HTTP
// server, socat and nc against echo and proxy, Python's asyncio client
// against echo. scripts/install-deps.sh installs them from Debian's packages;
// a test whose client is missing is skipped with the package named.

// startServe runs `loopkernel serve ARGS...` and returns its first listening
// address; the server is stopped with SIGTERM, and must exit 0, at cleanup.
func startServe(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve"}, args...)...)
	cmd.Env = cleanEnv()
	cmd.Stderr = os.Stderr
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
