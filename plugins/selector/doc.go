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

import "github.com/loopkernel/loopkernel/sdk"

// The bundled selectors register themselves, so importing this package is
// what makes "epoll" and "poll" selectable by name (sdk.Selectors) in either
// placement.
func init() {
	sdk.Selectors.Register("epoll", NewEpoll)
	sdk.Selectors.Register("poll", NewPoll)
}
