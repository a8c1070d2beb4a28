package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/policy"
)

// seccompExecEnv, set in the environment of this test binary re-executed,
// makes TestMain refuse io_uring_setup with EPERM in a seccomp filter, as
// Docker's default profile does (moby#46762), and exec the loopkernel
// binary with the rest of the arguments under it: the refusal a user in a
// container meets, made without root or a container.
const seccompExecEnv = "LOOPKERNEL_TEST_SECCOMP_EXEC"

// execUnderSeccomp does that; it returns only on failure.
func execUnderSeccomp(args []string) error {
	const (
		auditArchX8664 = 0xc000003e
		retErrno       = 0x00050000
		retAllow       = 0x7fff0000
	)
	if unix.SYS_IO_URING_SETUP != 425 || unsafe.Sizeof(uintptr(0)) != 8 {
		return fmt.Errorf("the seccomp filter is written for linux/amd64")
	}
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}, // arch
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: auditArchX8664, Jt: 0, Jf: 3},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // system call number
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_IO_URING_SETUP, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: retErrno | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: retAllow},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); e != 0 {
		return fmt.Errorf("seccomp: %w", e)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, seccompExecEnv+"=") {
			env = append(env, kv)
		}
	}
	return syscall.Exec(args[0], args, env)
}

// Where a seccomp profile refuses io_uring, the uring policy fails saying
// why, naming the epoll policy and --proactor-fallback; with the fallback
// (flag or environment) the program runs on the policy's selector and
// logs exactly one warning.
func TestProactorRefusedBySeccomp(t *testing.T) {
	self, err := os.Executable()
	require.NoError(t, err)
	run := func(env []string, args ...string) result {
		// loopkernel runs binary; point it at this test binary as the
		// seccomp launcher, which execs the real one.
		saved := binary
		binary = self
		defer func() { binary = saved }()
		return loopkernel(t, append([]string{seccompExecEnv + "=1", policy.ProactorEnv + "=", policy.ProactorFallbackEnv + "="}, env...),
			append([]string{saved}, args...)...)
	}
	r := run(nil, "example", "hello", "--policy", "uring")
	require.Equal(t, 1, r.code, "stdout %q stderr %q", r.stdout, r.stderr)
	assert.Contains(t, r.stderr, "io_uring refused")
	assert.Contains(t, r.stderr, "operation not permitted")
	assert.Contains(t, r.stderr, "seccomp")
	assert.Contains(t, r.stderr, `policy "epoll"`)
	assert.Contains(t, r.stderr, "--proactor-fallback")

	// Out of process the refusal is the same (the plugin would inherit
	// the filter; the host checks before it starts one), and no plugin is
	// started for nothing.
	r = run(nil, "example", "hello", "--policy", "uring-plugin")
	require.Equal(t, 1, r.code, "stdout %q stderr %q", r.stdout, r.stderr)
	assert.Contains(t, r.stderr, "io_uring refused")
	assert.Contains(t, r.stderr, `policy "epoll"`)
	assert.NotContains(t, r.stderr, "plugin process exited")

	for _, c := range []struct {
		name string
		env  []string
		args []string
	}{
		{"flag", nil, []string{"example", "hello", "--policy", "uring", "--proactor-fallback"}},
		{"environment", []string{policy.ProactorFallbackEnv + "=1"}, []string{"example", "hello", "--proactor", "uring"}},
		{"plugin", nil, []string{"example", "hello", "--policy", "uring-plugin", "--proactor-fallback"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(c.env, c.args...)
			require.Equal(t, 0, r.code, r.stderr)
			assert.Equal(t, "Hello World\n", r.stdout)
			assert.Equal(t, 1, strings.Count(r.stderr, "[WARN]"), r.stderr)
			assert.Contains(t, r.stderr, "proactor refused")
			assert.Contains(t, r.stderr, "selector=epoll")
		})
	}
}
