package echobench

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseKiB(t *testing.T) {
	status := "Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t   16896 kB\nRssAnon:\t 2416 kB\n"
	n, err := parseKiB([]byte(status), "VmRSS:")
	require.NoError(t, err)
	assert.Equal(t, int64(16896), n)
	n, err = parseKiB([]byte("Rss:   10 kB\nPss:                9384 kB\n"), "Pss:")
	require.NoError(t, err)
	assert.Equal(t, int64(9384), n)
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n", "VmRSS:\t-1 kB\n"} {
		_, err := parseKiB([]byte(bad), "VmRSS:")
		assert.Error(t, err, "%q", bad)
	}
}

func FuzzParseKiB(f *testing.F) {
	f.Add([]byte("VmRSS:\t 16896 kB\n"))
	f.Add([]byte("VmRSS: kB kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseKiB(b, "VmRSS:")
		if err == nil && n < 0 {
			t.Fatalf("negative size %d from %q", n, b)
		}
	})
}

// This process's own memory, through the same /proc readers the
// benchmark applies to a server.
func TestProcessTreeMemSelf(t *testing.T) {
	rss, err := processTreeRSS(os.Getpid())
	require.NoError(t, err)
	assert.Positive(t, rss)
	if _, err := os.Stat("/proc/self/smaps_rollup"); err == nil {
		pss, err := processTreeMem(os.Getpid(), processPSS)
		require.NoError(t, err)
		assert.Positive(t, pss)
	}
}

// openIdle against the floor: every connection echoes once and stays open.
func TestOpenIdle(t *testing.T) {
	addr := serveInBackground(t, ServeFloor)
	conns, err := openIdle(context.Background(), addr, 100, nil)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	require.NoError(t, err)
	require.Len(t, conns, 100)
	require.NoError(t, echoOnce(conns[57], idleMessage(57)))
}

// A server that answers with the wrong bytes is caught.
func TestOpenIdleMismatch(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 64)
				n, _ := c.Read(buf)
				c.Write(bytes.ToUpper(buf[:n]))
			}()
		}
	}()
	conns, err := openIdle(context.Background(), ln.Addr().String(), 3, nil)
	for _, c := range conns {
		c.Close()
	}
	require.ErrorIs(t, err, ErrMismatch)
}

func TestWriteIdleTable(t *testing.T) {
	rows := []IdleRow{
		{Server: "loopkernel/epoll", Conns: IdleTargetConns, Echoed: IdleTargetConns, BeforeKiB: 15000, IdleKiB: 29000, IdlePssKiB: 22000, PerConnKiB: 1.4},
		{Server: "loopkernel/epoll-plugin", Conns: IdleTargetConns, Echoed: IdleTargetConns, BeforeKiB: 33000, IdleKiB: 50000, PerConnKiB: 1.7},
		{Server: "floor", Conns: IdleTargetConns, Echoed: IdleTargetConns, BeforeKiB: 14000, IdleKiB: 14500, PerConnKiB: 0.05},
		{Server: "uvloop", Conns: IdleTargetConns, Echoed: IdleTargetConns, BeforeKiB: 20000, IdleKiB: 29000, PerConnKiB: 0.9},
		{Server: "asyncio", Conns: IdleTargetConns, Error: "boom"},
	}
	var b strings.Builder
	WriteIdleTable(&b, rows)
	out := b.String()
	assert.Regexp(t, `(?m)^\s*loopkernel/epoll\s+10000\s+10000\s+14\.6\s+28\.3\s+1\.40\s+21\.5\s+2\.00\s+1\.00\s+1\.56\s*$`, out)
	assert.Regexp(t, `(?m)^\s*asyncio\s+10000\s+0\s+failed: boom`, out)
	assert.Contains(t, out, "loopkernel/epoll meets it at 29.7 MB RSS")
	assert.Contains(t, out, "loopkernel/epoll-plugin MISSES it at 51.2 MB RSS")
}
