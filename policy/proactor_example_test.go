package policy_test

import (
	"errors"
	"fmt"

	"github.com/loopkernel/loopkernel/policy"
	"github.com/loopkernel/loopkernel/sdk"
)

// --proactor (Flags.Proactor, else $LOOPKERNEL_PROACTOR) puts the io_uring
// proactor on any policy, names its out-of-process placement, or takes it
// off with policy.ProactorNone.
func ExampleChoose_proactor() {
	for _, spec := range []string{"uring", "uring-plugin", policy.ProactorNone} {
		p, err := policy.Choose(policy.Flags{Policy: "uring", Proactor: spec})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s: proactor %q, selector %q\n", spec, p.Proactor, p.Selector)
	}
	_, err := policy.Choose(policy.Flags{Proactor: "urnig"})
	fmt.Println(errors.Is(err, sdk.ErrUnknownBackend))
	// Output:
	// uring: proactor "uring", selector "epoll"
	// uring-plugin: proactor "plugin:uring", selector "epoll"
	// none: proactor "", selector "epoll"
	// true
}
