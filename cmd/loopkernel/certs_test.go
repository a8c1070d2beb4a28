package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCerts: `loopkernel certs` writes a CA and a server certificate that
// verify for the hosts asked, with the key private to its owner; openssl
// agrees when it is installed.
func TestCerts(t *testing.T) {
	dir := t.TempDir()
	r := loopkernel(t, nil, "certs", "--dir", dir, "--hosts", "localhost,127.0.0.1")
	require.Equal(t, 0, r.code, r.stderr)
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	require.NoError(t, err)
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	require.NoError(t, err)
	for _, h := range []string{"localhost", "127.0.0.1"} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: h})
		assert.NoError(t, err, h)
	}
	fi, err := os.Stat(filepath.Join(dir, "key.pem"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the key is readable by its owner only")
	if openssl, err := exec.LookPath("openssl"); err == nil {
		out, err := exec.Command(openssl, "verify", "-CAfile", filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem")).CombinedOutput()
		assert.NoError(t, err, "openssl verify: %s", out)
	}
	assert.Equal(t, 2, loopkernel(t, nil, "certs", "--hosts", "").code, "no hosts is a usage error")
}
