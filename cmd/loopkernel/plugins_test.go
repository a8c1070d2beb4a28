package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/plugins/proactor"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// pluginDir makes a plugin directory holding the example plugin (a
// symlink, as an installed plugin often is) and a non-plugin file.
func pluginDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Symlink(thirdParty, filepath.Join(dir, "loopkernel-plugin-example")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README"), []byte("not a plugin\n"), 0o644))
	return dir
}

func TestPluginsListsAndStartsEveryBackEnd(t *testing.T) {
	dir := pluginDir(t)
	r := loopkernel(t, nil, "plugins", "--plugin-dir", dir)
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	// Both placements of each bundled back-end, with the capabilities the
	// started back-end reported.
	for _, re := range []string{
		`(?m)^  selector\s+epoll\s+in-process\s+serves "epoll", max-fds unlimited, regular-files no \(started in \S+\)$`,
		// Out of process, max-fds is the plugin's descriptor budget (it
		// holds a copy of each registered descriptor).
		`(?m)^  selector\s+plugin:epoll\s+out-of-process \(this binary re-executed\)\s+serves "epoll", max-fds \d+, regular-files no \(started in \S+\)$`,
		`(?m)^  selector\s+poll\s+in-process\s+serves "poll", max-fds unlimited, regular-files yes \(started in \S+\)$`,
		`(?m)^  selector\s+plugin:poll\s+out-of-process \(this binary re-executed\)\s+serves "poll", max-fds \d+, regular-files yes \(started in \S+\)$`,
	} {
		assert.Regexp(t, re, r.stdout)
	}
	// The resolver and executor families, each answering one real call in
	// both placements.
	for _, re := range []string{
		`(?m)^  resolver\s+go\s+in-process\s+answers getnameinfo \(127.0.0.1:80 -> 127.0.0.1 80\) \(started in \S+\)$`,
		`(?m)^  resolver\s+plugin:go\s+out-of-process \(this binary re-executed\)\s+answers getnameinfo \(127.0.0.1:80 -> 127.0.0.1 80\) \(started in \S+\)$`,
		`(?m)^  executor\s+goroutine\s+in-process\s+runs registered functions \(\d+ registered\) \(started in \S+\)$`,
		`(?m)^  executor\s+plugin:goroutine\s+out-of-process \(this binary re-executed\)\s+runs registered functions \(\d+ registered\) \(started in \S+\)$`,
	} {
		assert.Regexp(t, re, r.stdout)
	}
	// The proactor family, one no-op through the ring (and the plane), or
	// not started where this machine refuses io_uring.
	proactorRe := `serves "uring", completes a no-op \(\d+ operations\) \(started in \S+\)`
	if proactor.Available() != nil {
		proactorRe = `not started: .*io_uring.*`
	}
	assert.Regexp(t, `(?m)^  proactor\s+uring\s+in-process\s+`+proactorRe+`$`, r.stdout)
	assert.Regexp(t, `(?m)^  proactor\s+plugin:uring\s+out-of-process \(this binary re-executed\)\s+`+proactorRe+`$`, r.stdout)
	assert.Contains(t, r.stdout, "Third-party plugins in "+dir+":")
	assert.Regexp(t, `(?m)^  plugin:example\s+`+filepath.Join(dir, "loopkernel-plugin-example")+`\s+serves "example", max-fds \d+, regular-files yes \(started in \S+\)$`, r.stdout)
	assert.NotContains(t, r.stdout, "README")

	// The environment names the directory when the flag does not.
	r = loopkernel(t, []string{plugin.PluginDirEnv + "=" + dir}, "plugins")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "plugin:example")
}

func TestPluginsNoStart(t *testing.T) {
	dir := pluginDir(t)
	r := loopkernel(t, nil, "plugins", "--plugin-dir", dir, "--no-start")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Regexp(t, `(?m)^  selector\s+plugin:epoll\s+out-of-process \(this binary re-executed\)\s+not started$`, r.stdout)
	assert.Regexp(t, `(?m)^  executor\s+plugin:goroutine\s+out-of-process \(this binary re-executed\)\s+not started$`, r.stdout)
	assert.Regexp(t, `(?m)^  plugin:example\s+\S+\s+not started$`, r.stdout)
	assert.NotContains(t, r.stdout, "serves")
	assert.NotContains(t, r.stdout, "answers")
}

func TestPluginsReportsAPluginThatDoesNotStart(t *testing.T) {
	dir := pluginDir(t)
	// Executable, named like a plugin, but not one: it exits at once.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "loopkernel-plugin-bogus"), []byte("#!/bin/sh\nexit 3\n"), 0o755))
	r := loopkernel(t, nil, "plugins", "--plugin-dir", dir, "--start-timeout", "20s")
	assert.Equal(t, 1, r.code, r.stdout+r.stderr)
	assert.Regexp(t, `(?m)^  plugin:bogus\s+\S+loopkernel-plugin-bogus\s+failed: .+$`, r.stdout)
	// The working ones are still listed with their capabilities.
	assert.Regexp(t, `(?m)^  plugin:example\s+\S+\s+serves "example"`, r.stdout)
	assert.Contains(t, r.stderr, "1 back-end(s) failed to start")
}

// TestPluginsRefusesAMisnamedPlugin: a plugin whose Serve name is not the
// NAME of its file loopkernel-plugin-NAME is refused by `plugins` as
// `conformance --selector plugin:NAME` refuses it, not listed as healthy.
func TestPluginsRefusesAMisnamedPlugin(t *testing.T) {
	dir := pluginDir(t)
	require.NoError(t, os.Symlink(thirdParty, filepath.Join(dir, "loopkernel-plugin-other")))
	r := loopkernel(t, nil, "plugins", "--plugin-dir", dir)
	assert.Equal(t, 1, r.code, r.stdout+r.stderr)
	assert.Regexp(t, `(?m)^  plugin:other\s+\S+loopkernel-plugin-other\s+failed: .*serves "example"`, r.stdout)
	assert.Regexp(t, `(?m)^  plugin:example\s+\S+\s+serves "example"`, r.stdout)

	c := loopkernel(t, nil, "conformance", "--selector", "plugin:other", "--plugin-dir", dir, "--suite", "selector", "--run", "^selector/wake/before-wait$")
	assert.Equal(t, 1, c.code, c.stdout+c.stderr)
	assert.Contains(t, c.stderr, `serves "example"`)
}

func TestPluginsWithoutADirectory(t *testing.T) {
	r := loopkernel(t, []string{plugin.PluginDirEnv + "="}, "plugins", "--no-start")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "Third-party plugins: no plugin directory (set --plugin-dir or $"+plugin.PluginDirEnv+")")

	r = loopkernel(t, nil, "plugins", "--plugin-dir", filepath.Join(t.TempDir(), "missing"))
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "plugin directory")
	assert.Contains(t, r.stderr, "no such file or directory")
}
