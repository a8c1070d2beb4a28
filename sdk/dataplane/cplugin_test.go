package dataplane

import (
	"github.com/stretchr/testify/require"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// TestCPluginFollowsWire drives testdata/cplugin/cplugin.c, a plugin written
// in C from WIRE.md alone, with the Go Client: hello, batched registration
// across frames, readiness, modify, wake, unregister and goodbye. It checks
// the document, not just this package's agreement with itself.
func TestCPluginFollowsWire(t *testing.T) {
	bin := buildCPlugin(t, "cplugin")

	host, pconn, err := Socketpair()
	require.NoError(t, err)
	cmd := exec.Command(bin)
	cmd.ExtraFiles = []*os.File{pconn}
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	pconn.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	host, tp := tapped(t, host)
	c, err := NewClient(host, hclog.NewNullLogger())
	require.NoError(t, err)
	watchdog(t, c)
	require.Equal(t, sdk.Capabilities{Name: "c-epoll"}, c.Capabilities())

	// More registrations than one frame carries: the batch uses MORE.
	const n = maxFDsPerFrame + 20
	peers := make([]int, n)
	for i := range n {
		a, b := pair(t)
		peers[i] = b
		require.NoError(t, c.Register(a, sdk.MakeToken(uint32(i), 1), sdk.Read))
	}
	evs := make([]sdk.Event, n+1)
	got, err := c.Wait(evs, 0)
	require.NoError(t, err)
	require.Zero(t, got)
	require.Equal(t, uint64(2), tp.requests.Load())

	_, err = unix.Write(peers[7], []byte("x"))
	require.NoError(t, err)
	got, err = c.Wait(evs, -1)
	require.NoError(t, err)
	require.Equal(t, []sdk.Event{{Token: sdk.MakeToken(7, 1), Events: sdk.Read}}, evs[:got])

	require.NoError(t, c.Modify(sdk.MakeToken(7, 1), sdk.Write))
	require.NoError(t, c.Unregister(sdk.MakeToken(8, 1)))
	got, err = c.Wait(evs, -1)
	require.NoError(t, err)
	require.Equal(t, []sdk.Event{{Token: sdk.MakeToken(7, 1), Events: sdk.Write}}, evs[:got])
	require.NoError(t, c.Modify(sdk.MakeToken(7, 1), 0))

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.Wake() }()
	got, err = c.Wait(evs, -1)
	require.NoError(t, err)
	require.Zero(t, got)
	wg.Wait()

	require.NoError(t, c.Close())
	require.NoError(t, cmd.Wait(), "the C plugin exits 0 on goodbye")
}

// buildCPlugin compiles testdata/cplugin/NAME.c, a plugin written in C from
// WIRE.md alone, and returns the executable's path; it skips the test in
// -short mode or without a C compiler.
func buildCPlugin(t *testing.T, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("compiles C and starts a process")
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler")
	}
	bin := filepath.Join(t.TempDir(), name)
	out, err := exec.Command(cc, "-O1", "-Wall", "-o", bin, "testdata/cplugin/"+name+".c").CombinedOutput()
	require.NoError(t, err, "cc: %s", out)
	return bin
}
