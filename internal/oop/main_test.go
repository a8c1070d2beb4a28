// Package oop holds the kernel-level tests and benchmarks of the
// out-of-process placement: a kernel.Loop on a selector whose back-end runs
// in a supervised plugin process, checked for what a program on that loop
// sees when the plugin dies, and measured against the same back-end in
// process; and the bundled resolver and executor served the same way. It
// has no code of its own; the test binary is its own plugin.
package oop_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// TestMain lets ServeBundled serve a bundled back-end (registered by the
// plugins/selector import)
// when sdk/plugin re-executes this binary as a plugin.
func TestMain(m *testing.M) {
	sdk.Selectors.Register("startfault", newStartFault)
	plugin.ServeBundled()
	quickRaceExit()
	if name := os.Getenv(envEMFILEServer); name != "" {
		os.Exit(emfileServer(name))
	}
	os.Exit(m.Run())
}

// envStartFault names a file whose existence makes every new plugin
// process of the "startfault" selector fail at its start: a fault every
// new process repeats. In process, the selector is epoll.
const envStartFault = "LOOPKERNEL_OOP_START_FAULT"

func newStartFault() (sdk.Selector, error) {
	if _, inPlugin := os.LookupEnv("LOOPKERNEL_PLUGIN"); inPlugin { // go-plugin's cookie
		if f := os.Getenv(envStartFault); f != "" {
			if _, err := os.Stat(f); err == nil {
				return nil, fmt.Errorf("planted fault: %s exists", f)
			}
		}
	}
	return selector.NewEpoll()
}

// quickRaceExit stops the plugin processes this binary starts (itself,
// re-executed) from sleeping a second on exit when it is built with -race:
// the race runtime's atexit_sleep_ms defaults to 1000, which made every
// plugin Close take a second and a test that starts hundreds of plugins
// take minutes. Races are still reported; only the pause goes.
func quickRaceExit() {
	v := os.Getenv("GORACE")
	if !strings.Contains(v, "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(v+" atexit_sleep_ms=0"))
	}
}

// launch starts the bundled back-end in spec out of process; the loop that
// adopts it closes it, and so does the cleanup if no loop did.
func launch(t testing.TB, spec plugin.Spec) *plugin.RemoteSelector {
	t.Helper()
	if spec.Logger == nil {
		spec.Logger = testLogger(t)
	}
	sel, err := plugin.Launch(context.Background(), sdk.Selectors, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sel.Close() })
	return sel.(*plugin.RemoteSelector)
}

// pidOf is the current plugin process's pid, from the control plane.
func pidOf(t testing.TB, sel *plugin.RemoteSelector) int {
	t.Helper()
	st, err := sel.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Pid
}

// alive reports whether pid is a process that has not exited (a zombie has).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// liveChildren lists this process's children that have not exited: the
// plugin processes still running.
func liveChildren(t testing.TB) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...; comm may contain spaces and parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == os.Getpid() {
			kids = append(kids, pid)
		}
	}
	return kids
}

// kill SIGKILLs pid and waits until it has exited, so the caller knows the
// plugin is dead, not dying, when it goes on. It fails the test on its own
// goroutine only; elsewhere use killErr.
func kill(t testing.TB, pid int) {
	t.Helper()
	if err := killErr(pid); err != nil {
		t.Fatal(err)
	}
}

func killErr(pid int) error {
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		return fmt.Errorf("kill plugin %d: %w", pid, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("plugin %d still alive 10s after SIGKILL", pid)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// socketpair returns a non-blocking stream socketpair, closed at cleanup.
func socketpair(t testing.TB) (a, b int) {
	t.Helper()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

// tcpPair returns both ends of a loopback TCP connection as non-blocking
// descriptors the test owns, closed at cleanup.
func tcpPair(t testing.TB) (a, b int) {
	t.Helper()
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ln)
	if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(ln, 1); err != nil {
		t.Fatal(err)
	}
	addr, err := unix.Getsockname(ln)
	if err != nil {
		t.Fatal(err)
	}
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(c, addr); err != nil {
		unix.Close(c)
		t.Fatal(err)
	}
	s, _, err := unix.Accept4(ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		unix.Close(c)
		t.Fatal(err)
	}
	if err := unix.SetNonblock(c, true); err != nil {
		t.Fatal(err)
	}
	_ = unix.SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	_ = unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	t.Cleanup(func() { unix.Close(c); unix.Close(s) })
	return s, c
}

// testLogger sends host and forwarded plugin logs to the test log.
func testLogger(t testing.TB) hclog.Logger { return testkit.Logger(t, "oop", hclog.Info) }
