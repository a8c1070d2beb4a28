package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestKilledConformanceRunLeavesNothing: `loopkernel conformance` on a
// selector plugin, killed mid-run (SIGKILL, then SIGTERM, at several
// points of the run, while plugins are being started and stopped), leaves
// no process, no socket and no directory behind in its $TMPDIR.
func TestKilledConformanceRunLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the conformance suite several times")
	}
	for _, c := range []struct {
		sig   syscall.Signal
		lines int // progress lines to wait for before the kill
	}{
		{syscall.SIGKILL, 1}, {syscall.SIGKILL, 15}, {syscall.SIGKILL, 40}, {syscall.SIGTERM, 25},
	} {
		t.Run(fmt.Sprintf("%v-after-%d", c.sig, c.lines), func(t *testing.T) {
			tmp := t.TempDir()
			cmd := exec.Command(binary, "conformance", "--selector=plugin:epoll")
			cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			pgid := cmd.Process.Pid
			t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
			sc := bufio.NewScanner(stdout)
			for n := 0; n < c.lines && sc.Scan(); n++ {
			}
			require.NoError(t, sc.Err())
			go func() {
				for sc.Scan() {
				}
			}()
			require.NoError(t, cmd.Process.Signal(c.sig), "only the host: its plugins must notice by themselves")
			_ = cmd.Wait()
			deadline := time.Now().Add(10 * time.Second)
			for len(groupMembers(pgid)) > 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			assert.Empty(t, groupMembers(pgid), "processes of the run left")
			left, _ := os.ReadDir(tmp)
			var names []string
			for _, e := range left {
				inside, _ := os.ReadDir(tmp + "/" + e.Name())
				var in []string
				for _, i := range inside {
					in = append(in, i.Name()+":"+i.Type().String())
				}
				names = append(names, fmt.Sprintf("%s%v", e.Name(), in))
			}
			assert.Empty(t, names, "left in TMPDIR")
		})
	}
}

// groupMembers lists the live processes of process group pgid.
func groupMembers(pgid int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := unix.Getpgid(pid); err != nil || g != pgid {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X' {
			pids = append(pids, pid)
		}
	}
	return pids
}
