// Package testkit is the scaffolding loopkernel's tests share, so that no
// package copies it: a loop on a chosen back-end, a coroutine run as a test
// under a watchdog (a stuck coroutine fails its test instead of hanging the
// binary), an echo protocol and a connected TCP client and server, and a
// connected socket pair.
//
// It reports through T, which *testing.T, *testing.B and conformance's case
// context all satisfy, so the certification suite (a library that also runs
// from the command line) uses the same helpers as ordinary tests; setup
// failures are reported as "testkit: ..." so they are not mistaken for the
// behaviour under test.
//
// It imports the kernel, the sdk registry and the bundled selectors (so that
// every registered back-end can be named), and nothing that tests: it must
// not import conformance, policy or any package's tests.
package testkit

// T is the part of a test the kit reports to.
type T interface {
	Helper()
	Errorf(format string, args ...any)
	FailNow()
	Cleanup(func())
}

// fatal fails t with a setup error.
func fatal(t T, what string, err error) {
	t.Helper()
	t.Errorf("testkit: %s: %v", what, err)
	t.FailNow()
}
