// Package selector holds the bundled in-process implementations of
// sdk.Selector: one over Linux epoll and one over poll(2).
//
// Both are level-triggered, as the seam requires, and both go straight to the
// system calls through golang.org/x/sys/unix instead of through Go's runtime
// netpoller: the kernel owns its descriptors and drives its own loop, so the
// netpoller's edge-triggered, goroutine-parking model is the wrong shape here.
//
// epoll is the default: its cost per Wait does not grow with the number of
// idle registrations. poll exists because it accepts every kind of descriptor,
// regular files included (epoll refuses them with EPERM), and because a second,
// structurally different implementation keeps the conformance suite honest.
package selector

import (
	"fmt"
	"strings"

	"github.com/loopkernel/loopkernel/sdk"
)

// Backend names a bundled selector and how to build one.
type Backend struct {
	Name string
	New  func() (sdk.Selector, error)
}

// Bundled lists the selectors compiled into this package, default first, so a
// command line or a configuration file can pick one by name and the
// conformance tests can bind every case to each of them. Treat it as
// read-only.
var Bundled = []Backend{
	{Name: "epoll", New: NewEpoll},
	{Name: "poll", New: NewPoll},
}

// New builds the bundled selector called name. An unknown name is an error that
// lists the known ones, because the caller is usually a person who mistyped a
// flag.
func New(name string) (sdk.Selector, error) {
	for _, b := range Bundled {
		if b.Name == name {
			return b.New()
		}
	}
	names := make([]string, len(Bundled))
	for i, b := range Bundled {
		names[i] = b.Name
	}
	return nil, fmt.Errorf("selector: unknown selector %q (known: %s)", name, strings.Join(names, ", "))
}
