package oop_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/policy"
)

// envEMFILEServer makes this test binary an echo server on the policy it
// names, under a descriptor limit of emfileLimit (TestEMFILEUnderPluginPolicies).
const envEMFILEServer = "LOOPKERNEL_OOP_EMFILE_SERVER"

const emfileLimit = 128

// emfileServer lowers RLIMIT_NOFILE (soft and hard, as `ulimit -n` does,
// so the plugin it starts inherits it), serves echo on 127.0.0.1, prints
// the port, and reports every exception-handler call on stdout.
func emfileServer(name string) int {
	lim := unix.Rlimit{Cur: emfileLimit, Max: emfileLimit}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	p, err := policy.Lookup(name)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	l, err := p.NewEventLoop()
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer l.Close()
	l.SetExceptionHandler(func(_ *kernel.Loop, c kernel.ErrorContext) {
		fmt.Printf("exception: %s: %v\n", c.Message, c.Err)
	})
	if _, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
		srv, err := kernel.CreateServer(co, testkit.NewEcho, []string{"127.0.0.1"}, "0", nil)
		if err != nil {
			return struct{}{}, err
		}
		port, err := testkit.Port(srv)
		if err != nil {
			return struct{}{}, err
		}
		fmt.Printf("port=%s\n", port)
		return struct{}{}, nil
	}); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	err = l.RunForever()
	fmt.Println("error: the loop stopped:", err)
	return 1
}

// echoes reports whether c echoes a line within d.
func echoes(c net.Conn, d time.Duration) bool {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return false
	}
	var buf [5]byte
	_, err := io.ReadFull(c, buf[:])
	return err == nil && string(buf[:]) == "ping\n"
}

// TestEMFILEUnderPluginPolicies: an echo server on each plugin policy,
// limited to 128 descriptors, is sent three times that many clients. It
// keeps the connections it has, pauses accepting (EMFILE, reported to the
// exception handler) instead of its plugin failing, resumes once
// connections close, and never exits; stopped, it leaves no plugin process
// and no socket directory.
func TestEMFILEUnderPluginPolicies(t *testing.T) {
	for _, name := range []string{"epoll-plugin", "poll-plugin"} {
		t.Run(name, func(t *testing.T) {
			exe, err := os.Executable()
			require.NoError(t, err)
			tmp := t.TempDir()
			cmd := exec.Command(exe)
			cmd.Env = append(os.Environ(), envEMFILEServer+"="+name, "TMPDIR="+tmp)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = testkit.LogWriter(t, name)
			require.NoError(t, cmd.Start())
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })

			lines := bufio.NewScanner(stdout)
			require.True(t, lines.Scan(), "the server said nothing")
			port, ok := strings.CutPrefix(lines.Text(), "port=")
			require.True(t, ok, "server: %s", lines.Text())
			var mu sync.Mutex
			var said []string
			go func() {
				for lines.Scan() {
					mu.Lock()
					said = append(said, lines.Text())
					mu.Unlock()
				}
			}()
			saidAny := func(sub string) bool {
				mu.Lock()
				defer mu.Unlock()
				for _, l := range said {
					if strings.Contains(l, sub) {
						return true
					}
				}
				return false
			}

			// Three times the limit in clients; connects beyond the
			// listen backlog may time out, which is the point.
			var conns []net.Conn
			t.Cleanup(func() {
				for _, c := range conns {
					c.Close()
				}
			})
			var wg sync.WaitGroup
			dialled := make([]net.Conn, 3*emfileLimit)
			for i := range dialled {
				wg.Go(func() {
					if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err == nil {
						dialled[i] = c
					}
				})
			}
			wg.Wait()
			for _, c := range dialled {
				if c != nil {
					conns = append(conns, c)
				}
			}
			echoed := make([]bool, len(conns))
			for i, c := range conns {
				wg.Go(func() { echoed[i] = echoes(c, time.Second) })
			}
			wg.Wait()
			var served, waiting []net.Conn
			for i, c := range conns {
				if echoed[i] {
					served = append(served, c)
				} else {
					waiting = append(waiting, c)
				}
			}
			t.Logf("%d clients connected: %d served, %d waiting", len(conns), len(served), len(waiting))
			require.NotEmpty(t, served)
			require.NotEmpty(t, waiting, "the server ran out of descriptors")
			require.Eventually(t, func() bool { return saidAny("out of system resource; pausing accepts") }, 5*time.Second, 20*time.Millisecond,
				"accepting paused on EMFILE")
			select {
			case err := <-exited:
				t.Fatalf("the server exited: %v; it said %q", err, said)
			default:
			}
			assert.False(t, saidAny("plugin"), "no plugin failure reported: %q", said)

			// Half the served clients leave; accepting resumes and takes
			// waiting clients in; the other half are still served.
			half := len(served) / 2
			for _, c := range served[:half] {
				c.Close()
			}
			var resumed atomic.Int64
			for _, c := range waiting {
				wg.Go(func() {
					if echoes(c, 5*time.Second) {
						resumed.Add(1)
					}
				})
			}
			wg.Wait()
			t.Logf("%d waiting clients served after %d left", resumed.Load(), half)
			assert.Positive(t, resumed.Load(), "accepting resumed after connections closed")
			kept := 0
			for _, c := range served[half:] {
				if echoes(c, 2*time.Second) {
					kept++
				}
			}
			assert.Equal(t, len(served)-half, kept, "the connections it had were kept")
			select {
			case err := <-exited:
				t.Fatalf("the server exited: %v", err)
			default:
			}

			// Stopped (as an operator would, process group and all), it
			// leaves nothing behind.
			for _, c := range conns {
				c.Close()
			}
			conns = nil
			require.NoError(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL))
			<-exited
			require.Eventually(t, func() bool { return processGroupGone(cmd.Process.Pid) }, 5*time.Second, 10*time.Millisecond,
				"no process of the server's group remains")
			left, _ := os.ReadDir(tmp)
			assert.Empty(t, left, "nothing left in TMPDIR")
		})
	}
}

// processGroupGone reports whether no live process is in group pgid.
func processGroupGone(pgid int) bool {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		if g, err := unix.Getpgid(pid); err == nil && g == pgid && testkit.Alive(pid) {
			return false
		}
	}
	return true
}
