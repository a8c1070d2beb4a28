package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/internal/certs"
)

// tlsFiles writes a CA and a server certificate for localhost and
// 127.0.0.1, and returns the CA, certificate and key files.
func tlsFiles(t *testing.T) (ca, cert, key string) {
	t.Helper()
	dir := t.TempDir()
	auth, err := certs.NewAuthority("serve tests", 24*time.Hour)
	require.NoError(t, err)
	leaf, err := auth.Issue(certs.Leaf{Hosts: []string{"localhost", "127.0.0.1"}})
	require.NoError(t, err)
	ca, cert, key = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(ca, auth.PEM, 0o600))
	require.NoError(t, os.WriteFile(cert, leaf.CertPEM, 0o600))
	require.NoError(t, os.WriteFile(key, leaf.KeyPEM, 0o600))
	return ca, cert, key
}

// Real TLS clients against `serve --tls-cert`: openssl s_client and
// Python's asyncio with an ssl.SSLContext against echo, on an in-process
// and a plugin policy; curl against http; and the proxy speaking TLS on
// both sides.
func TestServeTLSWithRealClients(t *testing.T) {
	ca, cert, key := tlsFiles(t)
	for _, pol := range []string{"epoll", "epoll-plugin"} {
		t.Run("echo/"+pol, func(t *testing.T) {
			addr := startServe(t, "echo", "--addr", "127.0.0.1:0", "--policy", pol, "--tls-cert", cert, "--tls-key", key)
			host, port, _ := net.SplitHostPort(addr)

			openssl := needTool(t, "openssl", "openssl")
			out := runTool(t, "through openssl\n", "sh", "-c",
				`(cat; sleep 1) | "$0" s_client -connect "$1" -CAfile "$2" -verify_return_error -quiet -no_ign_eof 2>/dev/null`, openssl, addr, ca)
			require.Equal(t, "through openssl\n", out)

			py := "/usr/bin/python3"
			if _, err := os.Stat(py); err != nil {
				t.Skip("/usr/bin/python3 not installed (Debian package python3)")
			}
			script := `
import asyncio, ssl, sys
async def main(host, port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    r, w = await asyncio.open_connection(host, int(port), ssl=ctx, server_hostname="localhost")
    payload = bytes(range(256)) * 4096  # 1 MiB
    w.write(payload)
    await w.drain()
    got = await r.readexactly(len(payload))
    assert got == payload, "echo differs"
    print(w.get_extra_info("ssl_object").version())
    w.close()
    await w.wait_closed()
asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
`
			require.Equal(t, "TLSv1.3\n", runTool(t, "", py, "-c", script, host, port, ca))
		})
	}
	t.Run("http", func(t *testing.T) {
		addr := startServe(t, "http", "--addr", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
		_, port, _ := net.SplitHostPort(addr)
		curl := needTool(t, "curl", "curl")
		url := "https://localhost:" + port + "/hello"
		out := runTool(t, "", curl, "-sS", "--cacert", ca, url, url)
		require.Equal(t, 2, strings.Count(out, "Hello"), out)
		// A client that does not trust the CA is refused.
		require.Error(t, runToolErr("", curl, "-sS", url))
	})
	t.Run("proxy", func(t *testing.T) {
		echo := startServe(t, "echo", "--addr", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
		_, echoPort, _ := net.SplitHostPort(echo)
		proxy := startServe(t, "proxy", "--addr", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key,
			"--upstream", "localhost:"+echoPort, "--upstream-ca", ca)
		openssl := needTool(t, "openssl", "openssl")
		out := runTool(t, "through two TLS hops\n", "sh", "-c",
			`(cat; sleep 1) | "$0" s_client -connect "$1" -CAfile "$2" -verify_return_error -quiet -no_ign_eof 2>/dev/null`, openssl, proxy, ca)
		require.Equal(t, "through two TLS hops\n", out)
	})
}

// runToolErr runs a tool that is expected to fail and returns its error.
func runToolErr(stdin string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	return cmd.Run()
}
