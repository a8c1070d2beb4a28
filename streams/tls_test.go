package streams

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
)

func TestTLSStreams(t *testing.T) {
	l := testkit.NewLoop(t, "")
	pki := testkit.TLS(t)
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		srv, err := StartServer(co, echoLines, "127.0.0.1", "0", &ServerOptions{ServerOptions: kernel.ServerOptions{SSL: pki.ServerConfig()}})
		if err != nil {
			return struct{}{}, err
		}
		defer srv.Close()
		port, err := testkit.Port(srv)
		if err != nil {
			return struct{}{}, err
		}
		r, w, err := OpenConnection(co, "127.0.0.1", port, &ConnOptions{ConnOptions: kernel.ConnOptions{SSL: pki.ClientConfig()}})
		if err != nil {
			return struct{}{}, err
		}
		defer w.Close()
		v, _ := w.GetExtraInfo("version")
		assert.Equal(t, "TLS 1.3", v)
		w.Write([]byte("over tls\n"))
		line, err := r.Readline(co)
		assert.Equal(t, "over tls\n", string(line))
		return struct{}{}, err
	})
	require.NoError(t, err)
}

// A line protocol that upgrades with STARTTLS, as SMTP and IMAP do, on both
// ends of the stream API.
func TestWriterStartTLS(t *testing.T) {
	l := testkit.NewLoop(t, "")
	pki := testkit.TLS(t)
	serve := func(co *kernel.Co, r *Reader, w *Writer) error {
		defer w.Close()
		line, err := r.Readline(co)
		if err != nil {
			return err
		}
		if string(line) != "STARTTLS\n" {
			return errors.New("expected STARTTLS, got " + strconv.Quote(string(line)))
		}
		w.Write([]byte("OK\n"))
		if err := w.StartTLS(co, pki.ServerConfig(), nil); err != nil {
			return err
		}
		sc := bufio.NewScanner(r.IOReader(co))
		for sc.Scan() {
			if _, err := io.WriteString(w.IOWriter(co), "secure: "+sc.Text()+"\n"); err != nil {
				return err
			}
		}
		return sc.Err()
	}
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		srv, err := StartServer(co, serve, "127.0.0.1", "0", nil)
		if err != nil {
			return struct{}{}, err
		}
		defer srv.Close()
		port, err := testkit.Port(srv)
		if err != nil {
			return struct{}{}, err
		}
		r, w, err := OpenConnection(co, "127.0.0.1", port, nil)
		if err != nil {
			return struct{}{}, err
		}
		defer w.Close()
		w.Write([]byte("STARTTLS\n"))
		ok, err := r.Readline(co)
		if err != nil || string(ok) != "OK\n" {
			return struct{}{}, errors.New("no OK before the upgrade")
		}
		host := "localhost"
		if err := w.StartTLS(co, pki.ClientConfig(), &kernel.StartTLSOptions{ServerHostname: &host}); err != nil {
			return struct{}{}, err
		}
		_, isTLS := w.GetExtraInfo("cipher")
		assert.True(t, isTLS, "the writer's transport is the TLS one")
		w.Write([]byte("hello\n"))
		line, err := r.Readline(co)
		assert.Equal(t, "secure: hello\n", string(line))
		assert.False(t, w.CanWriteEOF())
		return struct{}{}, err
	})
	require.NoError(t, err)
}

// A client that does not trust the server fails OpenConnection with the
// verification error.
func TestTLSStreamsUntrusted(t *testing.T) {
	l := testkit.NewLoop(t, "")
	pki := testkit.TLS(t)
	_, err := testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		srv, err := StartServer(co, echoLines, "127.0.0.1", "0", &ServerOptions{ServerOptions: kernel.ServerOptions{SSL: pki.ServerConfig()}})
		if err != nil {
			return struct{}{}, err
		}
		defer srv.Close()
		port, _ := testkit.Port(srv)
		_, _, err = OpenConnection(co, "127.0.0.1", port, &ConnOptions{ConnOptions: kernel.ConnOptions{SSL: &tls.Config{}}})
		return struct{}{}, err
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificate")
}
