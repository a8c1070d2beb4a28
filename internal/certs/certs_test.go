package certs_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/internal/certs"
)

func TestIssuedCertificatesVerifyAgainstTheirAuthority(t *testing.T) {
	ca, err := certs.NewAuthority("test", time.Hour)
	require.NoError(t, err)
	srv, err := ca.Issue(certs.Leaf{Hosts: []string{"localhost", "127.0.0.1", "::1"}})
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(srv.TLS.Certificate[0])
	require.NoError(t, err)
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: host})
		assert.NoError(t, err, host)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "example.com"})
	assert.Error(t, err, "a name the certificate does not carry")

	old, err := ca.Issue(certs.Leaf{Hosts: []string{"localhost"}, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	require.NoError(t, err)
	oldLeaf, _ := x509.ParseCertificate(old.TLS.Certificate[0])
	_, err = oldLeaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "localhost"})
	assert.Error(t, err, "expired")

	cli, err := ca.Issue(certs.Leaf{CommonName: "alice", Client: true})
	require.NoError(t, err)
	cliLeaf, _ := x509.ParseCertificate(cli.TLS.Certificate[0])
	_, err = cliLeaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	assert.NoError(t, err)
}

// A CA and a certificate for localhost, ready for a tls.Config.
func Example() {
	ca, err := certs.NewAuthority("example CA", 24*time.Hour)
	if err != nil {
		panic(err)
	}
	srv, err := ca.Issue(certs.Leaf{Hosts: []string{"localhost", "127.0.0.1"}})
	if err != nil {
		panic(err)
	}
	server := &tls.Config{Certificates: []tls.Certificate{srv.TLS}}
	client := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
	fmt.Println(len(server.Certificates), client.ServerName)
	// Output: 1 localhost
}
