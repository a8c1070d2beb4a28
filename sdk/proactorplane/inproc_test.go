package proactorplane_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/driver/completion"
	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/plugins/proactor"
	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/proactorplane"
)

// pairDriver runs the plugin side (Serve over a real io_uring) on a
// goroutine of this process and returns the host's driver over the
// client: the whole plane without a second process, so that the plane's
// protocol is tested apart from supervision (sdk/plugin and internal/oop
// test the process).
func pairDriver(t testing.TB) func() (sdk.Driver, error) {
	t.Helper()
	testkit.NeedUring(t)
	return func() (sdk.Driver, error) {
		sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		u, err := proactor.New()
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() {
			err := proactorplane.Serve(ctx, sp[1], u)
			served <- err
		}()
		c, err := proactorplane.NewClient("uring")
		if err != nil {
			cancel()
			return nil, err
		}
		if _, err := c.Attach(sp[0], 5*time.Second); err != nil {
			cancel()
			return nil, err
		}
		d, err := completion.New(c)
		if err != nil {
			cancel()
			return nil, err
		}
		return &closing{proactorplane.WrapDriver(d, "plugin:uring", c.Forget, func() error { return errors.New("died") }),
			func() error {
				cancel()
				err := <-served
				unix.Close(sp[0])
				unix.Close(sp[1])
				return err
			}, false}, nil
	}
}

// closing stops the served plugin after the driver closed.
type closing struct {
	*proactorplane.Driver
	stop func() error
	done bool
}

func (c *closing) Close() error {
	err := c.Driver.Close()
	if c.done {
		return err
	}
	c.done = true
	if serr := c.stop(); serr != nil && err == nil {
		err = fmt.Errorf("plugin side: %w", serr)
	}
	return err
}

var gaps = map[string]string{
	// Hung for 20 s once, in debug mode under a full `make test` on 2
	// cores (2026-12-04), and passed in every other run; not explained.
	// uring-plugin runs on this plane too; this stays a gap until the
	// hang is found.
	"net/sendfile/sock/forced-fallback": "sock_sendfile's read-and-send fallback over the plane hung once under load (not explained)",
}

// TestPlaneNetConformance runs the networking contract on the plane, plain
// and in debug mode.
func TestPlaneNetConformance(t *testing.T) {
	drv := pairDriver(t)
	t.Run("plain", func(t *testing.T) {
		conformance.RunNet(t, selector.NewEpoll, conformance.NetConfig{Driver: drv, Gaps: gaps})
	})
	t.Run("debug", func(t *testing.T) {
		conformance.RunNet(t, selector.NewEpoll, conformance.NetConfig{Driver: drv, Debug: true, Gaps: gaps})
	})
}

// TestPlaneKernelConformance runs the kernel contract (descriptor watching
// through the plugin's POLL) on the plane, plain and in debug mode.
func TestPlaneKernelConformance(t *testing.T) {
	drv := pairDriver(t)
	t.Run("plain", func(t *testing.T) {
		conformance.RunKernel(t, selector.NewEpoll, conformance.KernelConfig{Driver: drv})
	})
	t.Run("debug", func(t *testing.T) {
		conformance.RunKernel(t, selector.NewEpoll, conformance.KernelConfig{Driver: drv, Debug: true})
	})
}
