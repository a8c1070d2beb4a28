package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/policy"
)

// binary is the loopkernel command built once for every test: the tests run
// it as a user would, in its own process, so that signals, exit codes and
// stdout are the real ones.
var binary string

// thirdParty is examples/selector-plugin, built beside it.
var thirdParty string

func TestMain(m *testing.M) {
	if os.Getenv(seccompExecEnv) != "" { // seccomp_test.go: a launcher, not a test run
		fmt.Fprintln(os.Stderr, "seccomp launcher:", execUnderSeccomp(os.Args[1:]))
		os.Exit(125)
	}
	dir, err := os.MkdirTemp("", "loopkernel-cmd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "loopkernel")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building loopkernel:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	// A third-party selector plugin, for the ad-hoc plugin:PATH policy.
	thirdParty = filepath.Join(dir, "loopkernel-plugin-example")
	build = exec.Command("go", "build", "-o", thirdParty, "../../examples/selector-plugin")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the example plugin:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// hangGuard bounds a command that should finish promptly, so a broken loop
// fails the test instead of hanging the suite; it is no timing target.
const hangGuard = time.Minute

type result struct {
	stdout, stderr string
	code           int
}

// loopkernel runs the binary with args and extra environment entries,
// under hangGuard.
func loopkernel(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return loopkernelWithin(t, hangGuard, env, args...)
}

// loopkernelWithin runs the binary with args and extra environment
// entries, and fails the test if it has not exited within guard.
func loopkernelWithin(t *testing.T, guard time.Duration, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(t, ctx.Err(), "loopkernel %v did not finish within %v; stdout so far:\n%s", args, guard, stdout.String())
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		require.True(t, ok, "running %v: %v", args, err)
		code = ee.ExitCode()
	}
	return result{stdout.String(), stderr.String(), code}
}

// cleanEnv is the test's environment without a policy choice of its own.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, policy.EnvVar+"=") {
			env = append(env, kv)
		}
	}
	return env
}

func TestPolicies(t *testing.T) {
	r := loopkernel(t, nil, "policies")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `(?m)^epoll \(default\)\s+epoll\s+\S`, r.stdout)
	assert.Regexp(t, `(?m)^poll\s+poll\s+\S`, r.stdout)
	for _, name := range policy.Names() {
		assert.Contains(t, r.stdout, name)
	}
	assert.Contains(t, r.stdout, "selected: epoll")
}

func TestPolicyFlagAndEnvironment(t *testing.T) {
	// The flag after the subcommand's arguments, before the subcommand, and
	// the environment variable all select; the flag beats the environment.
	for _, c := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"flag after command", nil, []string{"policies", "--policy", "poll"}, "poll"},
		{"flag before command", nil, []string{"--policy=poll", "policies"}, "poll"},
		{"environment", []string{policy.EnvVar + "=poll"}, []string{"policies"}, "poll"},
		{"flag beats environment", []string{policy.EnvVar + "=poll"}, []string{"policies", "-policy", "epoll"}, "epoll"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := loopkernel(t, c.env, c.args...)
			require.Equal(t, 0, r.code, r.stderr)
			assert.Contains(t, r.stdout, "selected: "+c.want+" (")
		})
	}
}

func TestExampleHello(t *testing.T) {
	for _, p := range policy.Names() {
		t.Run(p, func(t *testing.T) {
			r := loopkernel(t, nil, "example", "hello", "--policy", p)
			require.Equal(t, 0, r.code, r.stderr)
			assert.Equal(t, "Hello World\n", r.stdout)
			assert.Empty(t, r.stderr)
		})
	}
}

func TestExampleWatchFD(t *testing.T) {
	for _, p := range policy.Names() {
		t.Run(p, func(t *testing.T) {
			r := loopkernel(t, []string{policy.EnvVar + "=" + p}, "example", "watch-fd")
			require.Equal(t, 0, r.code, r.stderr)
			assert.Equal(t, "Received: abc\n", r.stdout)
		})
	}
}

// TestThirdPartyPlugin runs an example on a selector plugin that is not
// registered as a policy: by path, and by name from the plugin directory.
func TestThirdPartyPlugin(t *testing.T) {
	r := loopkernel(t, nil, "example", "watch-fd", "--policy", "plugin:"+thirdParty)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "Received: abc\n", r.stdout)

	r = loopkernel(t, []string{"LOOPKERNEL_PLUGIN_DIR=" + filepath.Dir(thirdParty)}, "example", "hello", "--policy", "plugin:example")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "Hello World\n", r.stdout)

	r = loopkernel(t, nil, "example", "hello", "--policy", "plugin:/nonexistent/loopkernel-plugin-x")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "/nonexistent/loopkernel-plugin-x")
}

func TestExampleDate(t *testing.T) {
	// The real example runs for 5 s; the flags shrink it, the logic is the
	// same: a date per interval while time remains.
	r := loopkernel(t, nil, "example", "date", "--interval", "10ms", "--duration", "50ms")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.NotEmpty(t, lines)
	// A loaded machine may fire late and so print fewer; never more.
	assert.LessOrEqual(t, len(lines), 5)
	date := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$`)
	for _, l := range lines {
		assert.Regexp(t, date, l)
	}
	for i := 1; i < len(lines); i++ {
		assert.Less(t, lines[i-1], lines[i], "dates move forward")
	}
}

func TestExampleSignalsSelfSignal(t *testing.T) {
	for _, p := range []string{"epoll", "epoll-plugin"} {
		t.Run(p, func(t *testing.T) {
			r := loopkernel(t, nil, "example", "signals", "--self-signal", "--policy", p)
			require.Equal(t, 0, r.code, r.stderr)
			assert.Contains(t, r.stdout, "Event loop running forever, press Ctrl+C to interrupt.\n")
			assert.Regexp(t, `(?m)^pid \d+: send SIGINT or SIGTERM to exit\.$`, r.stdout)
			assert.True(t, strings.HasSuffix(r.stdout, "Got signal SIGINT: exit\n"), r.stdout)
		})
	}
}

// TestExampleSignalsFromOutside plays the user: it waits for the example to
// say it is running, then signals it the way a terminal does on Ctrl+C, to
// the whole process group (which, with a plugin policy, includes the plugin
// process), and expects a clean exit.
func TestExampleSignalsFromOutside(t *testing.T) {
	for _, c := range []struct {
		policy string
		sig    syscall.Signal
		name   string
	}{
		{"epoll", syscall.SIGTERM, "SIGTERM"},
		{"epoll", syscall.SIGINT, "SIGINT"},
		{"epoll-plugin", syscall.SIGINT, "SIGINT"},
		{"poll-plugin", syscall.SIGTERM, "SIGTERM"},
	} {
		t.Run(c.policy+"/"+c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, "example", "signals", "--policy", c.policy)
			cmd.Env = cleanEnv()
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			out, err := cmd.StdoutPipe()
			require.NoError(t, err)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			require.NoError(t, cmd.Start())
			sc := bufio.NewScanner(out)
			var got []string
			for sc.Scan() {
				got = append(got, sc.Text())
				if strings.HasPrefix(sc.Text(), "pid ") {
					// The handlers are installed before this line is printed.
					require.Equal(t, fmt.Sprintf("pid %d: send SIGINT or SIGTERM to exit.", cmd.Process.Pid), sc.Text())
					require.NoError(t, syscall.Kill(-cmd.Process.Pid, c.sig))
				}
			}
			require.NoError(t, cmd.Wait(), "stderr: %s", stderr.String())
			require.NotEmpty(t, got)
			assert.Equal(t, "Got signal "+c.name+": exit", got[len(got)-1])
		})
	}
}

func TestUnknownPolicyFailsListingNames(t *testing.T) {
	for _, c := range []struct {
		name string
		env  []string
		args []string
	}{
		{"flag", nil, []string{"example", "hello", "--policy", "kqueue"}},
		{"environment", []string{policy.EnvVar + "=kqueue"}, []string{"example", "hello"}},
		{"policies command", []string{policy.EnvVar + "=kqueue"}, []string{"policies"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := loopkernel(t, c.env, c.args...)
			assert.NotEqual(t, 0, r.code)
			assert.NotContains(t, r.stdout, "Hello World")
			assert.Contains(t, r.stderr, `"kqueue"`)
			for _, name := range policy.Names() {
				assert.Contains(t, r.stderr, name)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "Usage:"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"example"}, "want exactly one example NAME"},
		{[]string{"example", "nope"}, `unknown example "nope" (known: hello, date, watch-fd, signals)`},
		{[]string{"example", "hello", "--no-such-flag"}, "flag provided but not defined"},
		{[]string{"policies", "extra"}, "unexpected arguments"},
	} {
		r := loopkernel(t, nil, c.args...)
		assert.Equal(t, 2, r.code, "%v", c.args)
		assert.Contains(t, r.stderr, c.want, "%v", c.args)
	}
}

func TestHelp(t *testing.T) {
	r := loopkernel(t, nil, "help")
	require.Equal(t, 0, r.code)
	for _, c := range commands {
		assert.Contains(t, r.stdout, c.name)
		assert.Contains(t, r.stdout, c.summary)
	}
	r = loopkernel(t, nil, "help", "example")
	require.Equal(t, 0, r.code)
	for _, ex := range examples {
		assert.Contains(t, r.stdout, ex.name)
	}
	assert.Contains(t, r.stdout, "-self-signal")
	assert.Contains(t, r.stdout, "-policy")

	r = loopkernel(t, nil, "example", "-h")
	assert.Equal(t, 0, r.code)
	assert.Contains(t, r.stderr, "Usage: loopkernel example NAME")
}

func TestParseInterspersed(t *testing.T) {
	for _, c := range []struct {
		args       []string
		positional []string
		policy     string
	}{
		{[]string{"hello"}, []string{"hello"}, ""},
		{[]string{"hello", "--policy", "poll"}, []string{"hello"}, "poll"},
		{[]string{"--policy=poll", "a", "b"}, []string{"a", "b"}, "poll"},
		{[]string{"a", "--", "--policy", "x"}, []string{"a", "--policy", "x"}, ""},
		{[]string{"a", "-policy", "poll", "b"}, []string{"a", "b"}, "poll"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		e := &env{}
		addCommonFlags(fs, e)
		got, err := parseInterspersed(fs, c.args)
		require.NoError(t, err, "%v", c.args)
		assert.Equal(t, c.positional, got, "%v", c.args)
		assert.Equal(t, c.policy, e.flags.Policy, "%v", c.args)
	}
}
