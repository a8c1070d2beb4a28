package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/loopkernel/loopkernel/internal/certs"
)

var certsOpts struct {
	dir   string
	hosts string
	days  int
}

var certsCmd = &command{
	name:     "certs",
	synopsis: "",
	summary:  "make a test CA and a server certificate for serve --tls-cert (not for production)",
	help: `Writes, in --dir:
  ca.pem      the test CA's certificate: what clients trust
              (curl --cacert ca.pem, openssl s_client -CAfile ca.pem,
              ssl.create_default_context(cafile="ca.pem"))
  cert.pem    a server certificate for --hosts, followed by the CA
  key.pem     its private key (mode 0600)
  client.pem, client-key.pem
              a client certificate from the same CA, for mutual TLS

Then: loopkernel serve echo --tls-cert DIR/cert.pem --tls-key DIR/key.pem

The keys are ECDSA P-256 and the CA's key is not kept: the CA can sign
nothing more. The equivalent with openssl:
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout ca-key.pem -out ca.pem -subj /CN=test-ca -days 30
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout key.pem -out req.pem -subj /CN=localhost
  openssl x509 -req -in req.pem -CA ca.pem -CAkey ca-key.pem -days 30 \
    -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1') -out cert.pem`,
	flags: func(fs *flag.FlagSet) {
		fs.StringVar(&certsOpts.dir, "dir", "certs", "write the files into `DIR` (created if missing)")
		fs.StringVar(&certsOpts.hosts, "hosts", "localhost,127.0.0.1,::1", "comma-separated `NAMES` and addresses the server certificate is for")
		fs.IntVar(&certsOpts.days, "days", 30, "validity in `DAYS`")
	},
	run: runCerts,
}

func runCerts(e *env, args []string) error {
	if len(args) != 0 {
		return usagef("certs takes no arguments")
	}
	if certsOpts.days < 1 {
		return usagef("--days must be at least 1")
	}
	var hosts []string
	for _, h := range strings.Split(certsOpts.hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return usagef("--hosts names no host")
	}
	valid := time.Duration(certsOpts.days) * 24 * time.Hour
	ca, err := certs.NewAuthority("loopkernel test CA", valid)
	if err != nil {
		return err
	}
	server, err := ca.Issue(certs.Leaf{Hosts: hosts, NotAfter: time.Now().Add(valid)})
	if err != nil {
		return err
	}
	client, err := ca.Issue(certs.Leaf{CommonName: "loopkernel test client", Client: true, NotAfter: time.Now().Add(valid)})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(certsOpts.dir, 0o755); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"ca.pem", ca.PEM, 0o644},
		{"cert.pem", server.CertPEM, 0o644},
		{"key.pem", server.KeyPEM, 0o600},
		{"client.pem", client.CertPEM, 0o644},
		{"client-key.pem", client.KeyPEM, 0o600},
	}
	for _, f := range files {
		path := filepath.Join(certsOpts.dir, f.name)
		if err := os.WriteFile(path, f.data, f.mode); err != nil {
			return fmt.Errorf("certs: %w", err)
		}
		if err := os.Chmod(path, f.mode); err != nil { // WriteFile keeps an existing file's mode
			return fmt.Errorf("certs: %w", err)
		}
		fmt.Fprintln(e.stdout, path)
	}
	return nil
}
