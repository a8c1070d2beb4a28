package conformance_test

import (
	"os"
	"testing"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/internal/testkit"
	_ "github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// The test binary is its own selector plugin: the out-of-process placement
// re-executes it with the back-end's name in the environment, and
// ServeBundled, first thing in TestMain, serves that back-end instead of
// running tests. The bundled selectors register themselves when
// plugins/selector is imported.
func TestMain(m *testing.M) {
	plugin.ServeBundled()
	testkit.QuickRaceExit() // every plugin Close would otherwise take a second under -race
	os.Exit(m.Run())
}

// TestPlacements certifies every bundled back-end in both placements against
// the whole contract: the selector suite, the kernel suite, and the kernel
// suite again with the loops in debug mode. In-process is the back-end's own
// factory; out-of-process is the same factory served by a plugin process
// through the data plane, under sdk/plugin's supervision, one process per
// selector a case builds.
//
// -short keeps the in-process placement only: starting a plugin process per
// selector is what makes this test take a minute or two under -race rather
// than seconds. The subjects run one after another on purpose: the plugin
// starts are CPU-bound, so running two at once saves nothing on two cores
// and pushes the timing-sensitive cases (debug mode's slow-callback report)
// over their margins.
func TestPlacements(t *testing.T) {
	eachPlacement(t, func(t *testing.T, factory conformance.Factory) {
		t.Run("selector", func(t *testing.T) { conformance.RunSuite(t, conformance.SelectorSuite(), factory) })
		t.Run("kernel", func(t *testing.T) { conformance.RunKernel(t, factory) })
		t.Run("kernel-debug", func(t *testing.T) {
			conformance.RunKernel(t, factory, conformance.KernelConfig{Debug: true})
		})
	})
}

// eachPlacement runs body as a subtest per bundled back-end and placement:
// NAME in process, plugin:NAME in a plugin process. -short keeps the
// in-process placement only.
func eachPlacement(t *testing.T, body func(t *testing.T, f conformance.Factory)) {
	t.Helper()
	for _, b := range sdk.Selectors.All() {
		for _, spec := range []string{b.Name, "plugin:" + b.Name} {
			t.Run(spec, func(t *testing.T) {
				if testing.Short() && spec != b.Name {
					t.Skip("-short: no plugin processes")
				}
				f, err := plugin.Resolve(sdk.Selectors, spec, plugin.Options{})
				if err != nil {
					t.Fatal(err)
				}
				body(t, conformance.Factory(f))
			})
		}
	}
}

// TestOutOfProcessIsReallyOutOfProcess guards TestPlacements against
// certifying the in-process selector twice: the plugin: factory must hand
// out a supervised plugin selector whose back-end runs in another process.
func TestOutOfProcessIsReallyOutOfProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no plugin processes")
	}
	f, err := plugin.Resolve(sdk.Selectors, "plugin:epoll", plugin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sel, err := f()
	if err != nil {
		t.Fatal(err)
	}
	defer sel.Close()
	ps, ok := sel.(*plugin.RemoteSelector)
	if !ok {
		t.Fatalf("plugin:epoll built a %T, want *plugin.RemoteSelector", sel)
	}
	st, err := ps.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Pid == os.Getpid() || st.Pid <= 0 {
		t.Fatalf("plugin pid %d, test pid %d", st.Pid, os.Getpid())
	}
	if got := sel.Capabilities().Name; got != "epoll" {
		t.Fatalf("plugin serves %q, want epoll", got)
	}
}
