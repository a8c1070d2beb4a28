package policy_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/loopkernel/loopkernel/driver/completion"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/plugins/proactor"
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

// A proactor placement is a spec prefix and an opener: here "traced:"
// wraps whatever in-process proactor the rest of the spec names. An
// out-of-process proactor registers "plugin:" the same way, from its own
// package's init, and policy needs no knowledge of how it runs.
func ExampleRegisterProactorPlacement() {
	var opened []string
	policy.RegisterProactorPlacement("traced:", func(ctx context.Context, name string) (sdk.Driver, error) {
		opened = append(opened, name)
		p, err := sdk.Proactors.New(name)
		if err != nil {
			return nil, err
		}
		return completion.New(p)
	})
	p, err := policy.Choose(policy.Flags{Proactor: "traced:uring"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("proactor %q\n", p.Proactor)
	l, err := p.NewEventLoopContext(context.Background())
	if err == nil {
		l.Close()
	}
	// Where io_uring is refused (a seccomp profile), NewLoop fails saying
	// so; the placement was asked either way.
	fmt.Println(opened)
	// Output:
	// proactor "traced:uring"
	// [uring]
}

// ProactorDriver opens the driver a proactor spec names; "uring-plugin"
// runs the io_uring proactor in a supervised plugin process (this binary
// re-executed), and the loop on it does not know the difference.
func ExampleProactorDriver() {
	d, err := policy.ProactorDriver(context.Background(), "uring-plugin")
	if err != nil {
		// Where io_uring is refused the error says so (the host checks
		// before it starts a plugin, which would inherit the refusal).
		fmt.Println(errors.Is(err, proactor.ErrRefused))
		return
	}
	l := kernel.NewOnDriver(d)
	defer l.Close()
	fmt.Println(l.Driver().Capabilities().Backend == "plugin:uring")
	// Output: true
}
