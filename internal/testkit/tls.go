package testkit

import (
	"crypto/tls"
	"sync"
	"time"

	"github.com/loopkernel/loopkernel/internal/certs"
)

// PKI is a test's TLS material: a CA, a server certificate for localhost,
// 127.0.0.1 and ::1, and a client certificate, all issued by the CA.
type PKI struct {
	CA     *certs.Authority
	Server *certs.Issued
	Client *certs.Issued
}

var (
	pkiOnce sync.Once
	pki     *PKI
	pkiErr  error
)

// TLS returns the package's shared PKI, made on first use (a few
// milliseconds): every test in a binary can share it, since nothing keeps
// state in it.
func TLS(t T) *PKI {
	t.Helper()
	pkiOnce.Do(func() {
		var ca *certs.Authority
		if ca, pkiErr = certs.NewAuthority("loopkernel tests", 24*time.Hour); pkiErr != nil {
			return
		}
		p := &PKI{CA: ca}
		if p.Server, pkiErr = ca.Issue(certs.Leaf{Hosts: []string{"localhost", "127.0.0.1", "::1"}}); pkiErr != nil {
			return
		}
		if p.Client, pkiErr = ca.Issue(certs.Leaf{CommonName: "test client", Client: true}); pkiErr != nil {
			return
		}
		pki = p
	})
	if pkiErr != nil {
		fatal(t, "tls material", pkiErr)
	}
	return pki
}

// ServerConfig serves the server certificate.
func (p *PKI) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.Server.TLS}}
}

// ClientConfig trusts the CA (and verifies names as usual).
func (p *PKI) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: p.CA.Pool()}
}
