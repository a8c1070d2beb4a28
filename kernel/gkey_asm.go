//go:build amd64 || arm64

package kernel

// getg returns the address of the calling goroutine's runtime descriptor (its
// g), read from where the runtime keeps it (gkey_amd64.s, gkey_arm64.s). It is
// an identity only: never dereferenced, never stored as a pointer.
func getg() uintptr

// gkey identifies the calling goroutine for as long as it lives, in about a
// nanosecond. The runtime reuses a g once its goroutine has exited, so a key
// may only be kept while its goroutine is known to be alive: the table in
// goroutine.go removes every entry before the goroutine it names can end.
func gkey() uintptr { return getg() }
