package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// exampleDoc is the third-party plugin whose doc comment tells users how to
// build and use it.
const exampleDoc = "../../examples/selector-plugin/main.go"

// documentedUsage returns the command lines of the example's doc comment:
// the indented lines of its package comment, as a user would copy them.
func documentedUsage(t *testing.T) [][]string {
	t.Helper()
	src, err := os.ReadFile(exampleDoc)
	require.NoError(t, err)
	pkgDoc, _, ok := strings.Cut(string(src), "\npackage ")
	require.True(t, ok, "no package clause in %s", exampleDoc)
	var lines [][]string
	for _, m := range regexp.MustCompile(`(?m)^//\t(.+)$`).FindAllStringSubmatch(pkgDoc, -1) {
		lines = append(lines, strings.Fields(m[1]))
	}
	return lines
}

// TestSelectorPluginExampleUsage runs the command lines the example plugin
// documents, against the plugin TestMain built from it and this package's
// binary, so that a renamed flag or subcommand breaks here rather than for a
// user (the doc once told users to run a --plugin-dir flag the top level did
// not define). /tmp/plugins in the lines becomes a temporary directory.
func TestSelectorPluginExampleUsage(t *testing.T) {
	lines := documentedUsage(t)
	require.GreaterOrEqual(t, len(lines), 3, "the example documents how to build it and at least two ways to use it")
	dir := t.TempDir()
	const docDir = "/tmp/plugins"

	build := lines[0]
	require.Equal(t, []string{"go", "build", "-o", docDir + "/loopkernel-plugin-example", "./examples/selector-plugin"}, build,
		"the first documented line builds the example into the plugin directory, as TestMain builds it")
	require.NoError(t, os.Symlink(thirdParty, filepath.Join(dir, "loopkernel-plugin-example")))

	for _, line := range lines[1:] {
		t.Run(strings.Join(line, " "), func(t *testing.T) {
			var env, args []string
			for _, f := range line {
				f = strings.ReplaceAll(f, docDir, dir)
				switch {
				case len(args) == 0 && f != "loopkernel":
					require.Contains(t, f, "=", "a documented line is environment assignments, then loopkernel and its arguments")
					env = append(env, f)
				case len(args) == 0:
					args = append(args, binary)
				default:
					args = append(args, f)
				}
			}
			require.NotEmpty(t, args, "a documented line runs loopkernel")
			r := loopkernel(t, env, args[1:]...)
			assert.NotContains(t, r.stderr, "flag provided but not defined")
			require.Equal(t, 0, r.code, "documented command failed:\n%s%s", r.stdout, r.stderr)
			assert.NotEmpty(t, r.stdout, "a documented command says what it did")
		})
	}
}
