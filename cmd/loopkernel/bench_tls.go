package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/loopkernel/loopkernel/internal/certs"
)

// benchTLS is the throwaway PKI of `bench echo --tls` and `bench idle
// --tls`: a CA the client trusts and a certificate for 127.0.0.1 in files
// every server under test is started with. A nil *benchTLS is plaintext.
type benchTLS struct {
	dir       string
	cert, key string
	client    *tls.Config
}

// newBenchTLS makes the PKI when --tls was given, and nil otherwise.
func newBenchTLS(e *env) (*benchTLS, error) {
	if !echoOpts.tls {
		return nil, nil
	}
	ca, err := certs.NewAuthority("loopkernel bench CA", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	leaf, err := ca.Issue(certs.Leaf{Hosts: []string{"127.0.0.1", "localhost"}})
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "loopkernel-bench-tls-")
	if err != nil {
		return nil, err
	}
	bt := &benchTLS{dir: dir, cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem"),
		client: &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", ClientSessionCache: nil}}
	if err := os.WriteFile(bt.cert, leaf.CertPEM, 0o600); err != nil {
		bt.remove()
		return nil, err
	}
	if err := os.WriteFile(bt.key, leaf.KeyPEM, 0o600); err != nil {
		bt.remove()
		return nil, err
	}
	fmt.Fprintf(e.stderr, "bench: TLS with a throwaway certificate in %s\n", dir)
	return bt, nil
}

func (bt *benchTLS) remove() {
	if bt != nil {
		os.RemoveAll(bt.dir)
	}
}

// serveArgs are the flags that make `loopkernel serve` serve TLS.
func (bt *benchTLS) serveArgs() []string {
	if bt == nil {
		return nil
	}
	return []string{"--tls-cert", bt.cert, "--tls-key", bt.key}
}

// pythonArgs are the same for the asyncio and uvloop peers.
func (bt *benchTLS) pythonArgs() []string {
	if bt == nil {
		return nil
	}
	return []string{"--cert", bt.cert, "--key", bt.key}
}
