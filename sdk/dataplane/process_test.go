package dataplane

import (
	"context"
	"fmt"
	"github.com/stretchr/testify/require"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// childEnv makes the test binary act as a plugin process: "serve" runs
// Serve on fd 3 over a test epoll selector; "netecho" answers the same
// frames through net.UnixConn, for the benchmark comparison.
const childEnv = "LOOPKERNEL_DATAPLANE_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "serve":
		conn := os.NewFile(3, "dataplane")
		sel, err := newTestEpoll()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		logger := hclog.New(&hclog.LoggerOptions{Name: "dataplane-child", Level: hclog.Warn})
		if err := Serve(context.Background(), conn, sel, logger); err != nil {
			logger.Error("serve", "error", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "netecho":
		c, err := net.FileConn(os.NewFile(3, "dataplane"))
		if err != nil {
			os.Exit(2)
		}
		sel, err := newTestEpoll()
		if err != nil {
			os.Exit(2)
		}
		netEcho(c.(*net.UnixConn), sel)
		os.Exit(0)
	}
}

// netEcho answers each request-shaped message with a reply after a real
// Wait(0), exactly the work Serve does for an empty request.
func netEcho(c *net.UnixConn, sel sdk.Selector) {
	buf := make([]byte, maxFrame)
	evs := make([]sdk.Event, 64)
	reply := make([]byte, headerLen)
	putHeader(reply, header{typ: tEvents})
	for {
		n, err := c.Read(buf)
		if err != nil || n == 0 {
			return
		}
		sel.Wait(evs, 0)
		copy(reply[12:16], buf[12:16])
		if _, err := c.Write(reply); err != nil {
			return
		}
	}
}

// startChild launches the test binary as a plugin process on a new pair.
func startChild(t testing.TB, mode string) (host *os.File, cmd *exec.Cmd) {
	t.Helper()
	host, pconn, err := Socketpair()
	require.NoError(t, err)
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.ExtraFiles = []*os.File{pconn}
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	pconn.Close() // the child has its copy
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return host, cmd
}

// TestCrossProcess drives a real plugin process: readiness crosses, a
// SIGKILLed plugin surfaces as ErrPeerGone, and Replace with a new process
// restores the registration.
func TestCrossProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	host, cmd := startChild(t, "serve")
	c, err := NewClient(host, hclog.NewNullLogger())
	require.NoError(t, err)
	defer c.Close()
	watchdog(t, c)
	require.Equal(t, "test-epoll", c.Capabilities().Name)

	a, b := pair(t)
	tok := sdk.MakeToken(5, 2)
	require.NoError(t, c.Register(a, tok, sdk.Read))
	_, err = unix.Write(b, []byte("x"))
	require.NoError(t, err)
	evs := make([]sdk.Event, 4)
	n, err := c.Wait(evs, -1)
	require.NoError(t, err)
	require.Equal(t, []sdk.Event{{Token: tok, Events: sdk.Read}}, evs[:n])

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	cmd.Wait()
	_, err = c.Wait(evs, -1)
	require.ErrorIs(t, err, ErrPeerGone)

	host2, cmd2 := startChild(t, "serve")
	require.NoError(t, c.Replace(host2))
	n, err = c.Wait(evs, -1)
	require.NoError(t, err)
	if n == 0 { // the first Wait after Replace may just poll
		n, err = c.Wait(evs, -1)
		require.NoError(t, err)
	}
	require.Equal(t, []sdk.Event{{Token: tok, Events: sdk.Read}}, evs[:n])

	require.NoError(t, c.Close())
	require.NoError(t, cmd2.Wait(), "the plugin exits 0 after goodbye")
}
