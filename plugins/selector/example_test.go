package selector_test

import (
	"fmt"
	"log"
	"time"

	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
	"golang.org/x/sys/unix"
)

// A selector watches descriptors it does not own: register, wait, and
// unregister before closing.
func ExampleNewEpoll() {
	s, err := selector.NewEpoll()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		log.Fatal(err)
	}
	defer unix.Close(p[1])

	tok := sdk.MakeToken(7, 1) // slot 7, first generation
	if err := s.Register(p[0], tok, sdk.Read); err != nil {
		log.Fatal(err)
	}
	unix.Write(p[1], []byte("ping"))

	events := make([]sdk.Event, 8)
	n, err := s.Wait(events, time.Second)
	if err != nil {
		log.Fatal(err)
	}
	for _, ev := range events[:n] {
		fmt.Println(ev.Token, ev.Events)
	}
	s.Unregister(tok)
	unix.Close(p[0])
	// Output: 7.1 read
}

// Wake is the one call safe from any goroutine: it ends a Wait that would
// otherwise block forever.
func ExampleNewPoll() {
	s, err := selector.NewPoll()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	go s.Wake()
	n, err := s.Wait(make([]sdk.Event, 8), -1)
	fmt.Println(n, err)
	// Output: 0 <nil>
}

// Importing the package registers its selectors, so a flag's value picks
// one by name.
func Example_byName() {
	for _, name := range []string{"poll", "kqueue"} {
		s, err := sdk.Selectors.New(name)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(s.Capabilities().Name, "regular files:", s.Capabilities().RegularFiles)
		s.Close()
	}
	// Output:
	// poll regular files: true
	// no selector back-end "kqueue" (have [epoll poll]): unknown back-end
}
