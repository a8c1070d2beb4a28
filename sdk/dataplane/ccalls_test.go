package dataplane

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/sdk"
)

// TestCCallPluginFollowsWire drives testdata/cplugin/ccalls.c, a call-plane
// plugin written in C from WIRE.md §8 alone, with the Go CallClient, once
// per family: hello, calls and every result status, a ping, messages
// larger than a frame in both directions, and goodbye.
func TestCCallPluginFollowsWire(t *testing.T) {
	bin := buildCPlugin(t, "ccalls")
	start := func(fam Family) (*CallClient, *exec.Cmd) {
		host, pconn, err := Socketpair()
		require.NoError(t, err)
		cmd := exec.Command(bin)
		cmd.ExtraFiles = []*os.File{pconn}
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		pconn.Close()
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		c, err := NewCallClient(host, fam, nil)
		require.NoError(t, err)
		assert.Equal(t, "c-calls", c.Name())
		return c, cmd
	}
	ctx := context.Background()

	t.Run("executor", func(t *testing.T) {
		c, cmd := start(FamilyExecutor)
		res, err := c.Call(ctx, "echo", []byte("hi"))
		require.NoError(t, err)
		assert.Equal(t, "hi", string(res))
		big := bytes.Repeat([]byte("wire"), 100_000) // 400 kB: continuation frames both ways
		res, err = c.Call(ctx, "echo", big)
		require.NoError(t, err)
		assert.Equal(t, big, res)
		_, err = c.Call(ctx, "fail", nil)
		assert.Equal(t, &sdk.CallError{Func: "fail", Message: "failed in C"}, err)
		_, err = c.Call(ctx, "nosuch", nil)
		assert.ErrorIs(t, err, sdk.ErrUnknownFunc)
		require.NoError(t, c.Ping(ctx))
		require.NoError(t, c.Close())
		require.NoError(t, cmd.Wait(), "the plugin exits 0 on goodbye")
	})

	t.Run("resolver", func(t *testing.T) {
		c, cmd := start(FamilyResolver)
		ais, err := c.Getaddrinfo(ctx, "db.test", "5432", sdk.AddrinfoHints{})
		require.NoError(t, err)
		assert.Equal(t, []sdk.Addrinfo{{Family: 2, SockType: 1, Protocol: 6, CanonName: "db.test",
			Addr: netip.MustParseAddrPort("127.0.0.1:5432")}}, ais)
		_, err = c.Getaddrinfo(ctx, "nx.test", "", sdk.AddrinfoHints{})
		assert.Equal(t, &net.DNSError{Err: "no such host", Name: "nx.test", Server: "c", IsNotFound: true}, err)
		ni, err := c.Getnameinfo(ctx, netip.MustParseAddrPort("[::1]:8080"), 0)
		require.NoError(t, err)
		assert.Equal(t, sdk.NameInfo{Host: "c-host", Service: "8080"}, ni)
		require.NoError(t, c.Close())
		require.NoError(t, cmd.Wait())
	})
}
