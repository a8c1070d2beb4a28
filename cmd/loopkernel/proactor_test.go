package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/policy"
)

// --proactor and $LOOPKERNEL_PROACTOR choose the completion back-end for
// any policy, or take it off; `policies` lists the proactor family and
// says what was selected; an unknown name exits 1 listing the known ones.
func TestProactorFlagAndEnvironment(t *testing.T) {
	off := policy.ProactorEnv + "="
	for _, c := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"flag", []string{off}, []string{"policies", "--proactor", "uring"}, "selected: epoll (proactor uring,"},
		{"flag before command", []string{off}, []string{"--proactor=uring-plugin", "policies"}, "selected: epoll (proactor plugin:uring,"},
		{"environment", []string{policy.ProactorEnv + "=uring"}, []string{"policies", "--policy", "poll"}, "selected: poll (proactor uring,"},
		{"none", []string{off}, []string{"policies", "--policy", "uring", "--proactor", "none"}, "selected: uring (selector epoll,"},
		{"flag beats environment", []string{policy.ProactorEnv + "=uring"}, []string{"policies", "--proactor", "none"}, "selected: epoll (selector epoll,"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := loopkernel(t, c.env, c.args...)
			require.Equal(t, 0, r.code, r.stderr)
			assert.Contains(t, r.stdout, c.want)
			assert.Regexp(t, `(?m)^\s+proactor\s+uring$`, r.stdout, "the proactor family is listed")
			assert.Regexp(t, `(?m)^uring\s+proactor:uring\s`, r.stdout, "the uring policy is listed")
			assert.Regexp(t, `(?m)^uring-plugin\s+proactor:plugin:uring\s`, r.stdout, "the uring-plugin policy is listed")
		})
	}
	r := loopkernel(t, []string{off}, "policies", "--proactor", "urnig")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, `--proactor "urnig"`)
	assert.Contains(t, r.stderr, "[uring]")
}

// A loop built with --proactor uring, or uring-plugin (the proactor in a
// plugin process), runs the example; so does one on the uring-plugin policy.
func TestProactorFlagRunsExample(t *testing.T) {
	testkit.NeedUring(t)
	for _, args := range [][]string{
		{"example", "hello", "--proactor", "uring"},
		{"example", "hello", "--proactor", "uring-plugin"},
		{"--policy", "uring-plugin", "example", "hello"},
	} {
		r := loopkernel(t, []string{policy.ProactorEnv + "="}, args...)
		require.Equal(t, 0, r.code, "%v: %s", args, r.stderr)
		assert.Equal(t, "Hello World\n", r.stdout, "%v", args)
	}
}
