package echobench

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/internal/certs"
)

// The TLS paths of the bench: Go's crypto/tls reference server, the go
// client and the idle connections speaking TLS to it, and the epoll client
// refusing (it has no TLS).
func TestTLSLoadAndIdle(t *testing.T) {
	ca, err := certs.NewAuthority("echobench", time.Hour)
	require.NoError(t, err)
	leaf, err := ca.Issue(certs.Leaf{Hosts: []string{"127.0.0.1"}})
	require.NoError(t, err)
	server := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	client := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
	addr := serveInBackground(t, func(a string, l func(net.Addr)) error { return ServeGoNetTLS(a, server, l) })

	res, err := Load(context.Background(), LoadConfig{
		Addr: addr, Engine: EngineGo, Conns: 3, Size: 1024, Pipeline: 1, TLS: client,
		Warmup: 20 * time.Millisecond, Duration: 100 * time.Millisecond,
	}, nil)
	require.NoError(t, err)
	assert.Positive(t, res.Requests)

	_, err = Load(context.Background(), LoadConfig{Addr: addr, Engine: EngineEpoll, Conns: 1, Size: 64, TLS: client}, nil)
	require.ErrorContains(t, err, "no TLS")

	conns, err := openIdle(context.Background(), addr, 5, client)
	require.NoError(t, err)
	assert.Len(t, conns, 5)
	for _, c := range conns {
		_, isTLS := c.(*tls.Conn)
		assert.True(t, isTLS)
		c.Close()
	}
}
