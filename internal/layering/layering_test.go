package layering

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/loopkernel/loopkernel/"

// deps lists what pkgs depend on (their non-test code, transitively), as
// `go list -deps` does.
func deps(t *testing.T, pkgs ...string) []string {
	t.Helper()
	args := append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	return strings.Fields(string(out))
}

// TestLayers fails when a package imports, directly or through another
// package, a layer it must not: that is how the kernel once came to depend
// on a back-end (kernel/resolver.go importing plugins/resolver).
func TestLayers(t *testing.T) {
	for _, rule := range []struct {
		pkgs      []string
		forbidden string
		why       string
	}{
		{[]string{module + "kernel"}, module + "plugins/", "the kernel imports no back-end: policy/ wires them in"},
		{[]string{module + "sdk/..."}, module + "kernel", "sdk is what back-end authors import; it cannot depend on the kernel"},
		{[]string{module + "driver/..."}, module + "kernel", "a driver adapts a back-end family to the seam, below the kernel"},
		{[]string{module + "driver/..."}, module + "plugins/", "a driver is handed its back-end, whichever placement it runs in"},
		{[]string{module + "gonet", module + "streams"}, module + "plugins/", "adapters above the kernel serve whatever loop they are given"},
	} {
		for _, d := range deps(t, rule.pkgs...) {
			if d == strings.TrimSuffix(rule.forbidden, "/") || strings.HasPrefix(d, rule.forbidden) {
				t.Errorf("%v depends on %s: %s", rule.pkgs, d, rule.why)
			}
		}
	}
}

// TestRulesCanFail: the rules see a dependency that is there, so a passing
// TestLayers means something.
func TestRulesCanFail(t *testing.T) {
	found := false
	for _, d := range deps(t, module+"policy") {
		if strings.HasPrefix(d, module+"plugins/") {
			found = true
		}
	}
	if !found {
		t.Fatal("policy, which wires the back-ends in, shows no dependency on plugins/: the listing is broken")
	}
}
