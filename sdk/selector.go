// Package sdk is what a back-end author needs: the back-end families, the
// I/O seam the kernel's transports are written against, and (in the plugin
// files) the Serve entry point and the host side that runs a back-end in its
// own process.
//
// Families, each a Go interface over plain data with a registry that
// back-end packages fill from init (Registry): Selector (readiness, below),
// Proactor (completions, operations as records; declared here, implemented
// in its own issue), Resolver and Executor.
//
// The I/O seam (Driver and FD, io.go) is operation-level, after libuv's
// stream API: read start with a buffer provider, write with a completion,
// accept, connect, shutdown, close. A driver adapts one family to it
// (driver/readiness over any Selector), so each transport is written once.
//
// The Selector is deliberately as narrow as Go's internal/poll hooks:
// register, modify, unregister, wait with a timeout, and wake. The kernel
// keeps every descriptor it owns; a selector only watches it. Registrations
// are named by a Token (slot and generation) rather than by descriptor
// number, so an event that arrives late for a registration that has since
// been removed, and whose descriptor number has been reused, is recognised
// as stale and dropped.
package sdk

import (
	"errors"
	"fmt"
	"time"
)

// Events is a set of readiness conditions. Read and Write are the interest a
// registration asks for; Error and Hangup are only ever reported.
//
// Error and Hangup need no interest of their own: a selector reports them
// whenever the system does, for any registration with a non-empty interest
// set, read-only ones included (epoll and poll always do), and never for one
// whose interest set is empty. A selector is not required to report them
// separately: for a read-only registration whose peer has hung up, Read
// alone, Hangup alone or both are all correct (EOF is readable), and for a
// failed connect, Write or Error; what it must do is report something, on
// every Wait while the condition lasts. The kernel treats Error and Hangup
// as making both directions ready, so that the read or write that follows
// returns the error or EOF.
type Events uint32

const (
	// Read: the descriptor can be read without blocking (or is at EOF).
	Read Events = 1 << iota
	// Write: the descriptor can be written without blocking.
	Write
	// Error: an error is pending on the descriptor (EPOLLERR, POLLERR, POLLNVAL).
	Error
	// Hangup: the peer hung up (EPOLLHUP, POLLHUP).
	Hangup
)

// String renders the set as "read|write|error|hangup" for logs and test failures.
func (e Events) String() string {
	if e == 0 {
		return "none"
	}
	s := ""
	for _, b := range []struct {
		bit  Events
		name string
	}{{Read, "read"}, {Write, "write"}, {Error, "error"}, {Hangup, "hangup"}} {
		if e&b.bit != 0 {
			if s != "" {
				s += "|"
			}
			s += b.name
		}
	}
	if rest := e &^ (Read | Write | Error | Hangup); rest != 0 {
		if s != "" {
			s += "|"
		}
		s += fmt.Sprintf("%#x", uint32(rest))
	}
	return s
}

// Token names one registration: a slot in the kernel's registration table in
// the low 32 bits and the slot's generation in the high 32 bits. The kernel
// bumps the generation each time it reuses a slot.
type Token uint64

// MakeToken builds the token for a slot and generation.
func MakeToken(slot, gen uint32) Token { return Token(uint64(gen)<<32 | uint64(slot)) }

// Slot is the registration table index.
func (t Token) Slot() uint32 { return uint32(t) }

// Gen is the slot generation the token was issued for.
func (t Token) Gen() uint32 { return uint32(t >> 32) }

func (t Token) String() string { return fmt.Sprintf("%d.%d", t.Slot(), t.Gen()) }

// Event is one readiness report.
type Event struct {
	Token  Token
	Events Events
}

// Capabilities describes what a selector can do, so the conformance suite can
// skip a case and name the capability that was missing.
type Capabilities struct {
	// Name identifies the implementation, e.g. "epoll" or "poll", in logs
	// and reports. It is the implementation's own name and need not match
	// anything else. Three names meet when a selector is a plugin, and only
	// two must agree: the executable loopkernel-plugin-NAME found in the
	// plugin directory must serve NAME (the Name passed to plugin.Serve in
	// plugin.Backends), because `--selector plugin:NAME` starts it under
	// that name and the handshake refuses a plugin serving another
	// (`loopkernel plugins` refuses it the same way); a plugin started by
	// path, `plugin:/path/to/exe`, may serve any name. Capabilities.Name is
	// free: a plugin named "fast" may serve a selector whose Name is
	// "epoll".
	Name string
	// MaxFDs is the most registrations the selector accepts; 0 means no limit
	// other than the process's.
	MaxFDs int
	// RegularFiles reports whether regular files can be registered (poll
	// reports them always ready; epoll refuses them with EPERM).
	RegularFiles bool
}

// Selector is a level-triggered readiness selector: as long as a registered
// descriptor is ready for an event in its interest set, every Wait reports it.
//
// The kernel calls Register, Modify, Unregister and Wait from its loop
// goroutine only, never concurrently; Wake may be called from any goroutine
// at any time. An implementation may defer applying Modify and Unregister
// until the next Wait (that is how the out-of-process placement batches them
// into one exchange per loop iteration), but once Unregister returns, Wait
// must not report the token again. The kernel unregisters a descriptor before
// it closes it.
type Selector interface {
	// Register starts watching fd for interest under tok. fd stays the
	// caller's: the selector must not close it (an implementation that needs
	// its own copy dups it and closes the copy on Unregister). Registering a
	// token or descriptor that is already registered fails with ErrExists.
	Register(fd int, tok Token, interest Events) error
	// Modify replaces the interest set of a registration. An empty set keeps
	// the registration but reports nothing for it.
	Modify(tok Token, interest Events) error
	// Unregister stops watching the registration. Unknown tokens fail with
	// ErrNotRegistered.
	Unregister(tok Token) error
	// Wait blocks until at least one registration is ready, Wake is called,
	// or timeout passes (a negative timeout waits indefinitely, zero polls).
	// It fills events (one entry per ready token, conditions merged) and
	// returns how many it filled. An interrupted wait returns 0, nil.
	//
	// A positive timeout is a minimum: Wait must not return with nothing
	// before it has passed (but for an interruption), so a system call that
	// counts in coarser units rounds up, never down (1.9ms is 2ms for
	// epoll_wait, not 1ms; 1ns is 1ms, not a poll). Past the timeout it
	// returns promptly: the conformance suite holds a selector's lateness,
	// and the latency of readiness and of Wake, to a reference measured in
	// the same run.
	Wait(events []Event, timeout time.Duration) (int, error)
	// Wake makes the current Wait, or the next one if none is in progress,
	// return promptly. It is safe from any goroutine; extra wakes coalesce.
	Wake() error
	// Capabilities reports what this selector supports.
	Capabilities() Capabilities
	// Close releases the selector's own resources (never the registered
	// descriptors). Every later call fails with ErrSelectorClosed.
	Close() error
}

// Errors a Selector returns; implementations wrap them with context so that
// errors.Is works across both placements.
var (
	ErrExists         = errors.New("already registered")
	ErrNotRegistered  = errors.New("not registered")
	ErrSelectorClosed = errors.New("selector closed")
)
