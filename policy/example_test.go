package policy_test

import (
	"errors"
	"fmt"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/policy"
	"github.com/loopkernel/loopkernel/sdk"
)

// A command picks its policy from a --policy flag, falling back to
// $LOOPKERNEL_POLICY and then to the default, and puts it in force.
func ExampleSelect() {
	flagValue := "poll" // e.g. from flag.String("policy", "", ...)
	p, err := policy.Select(flagValue)
	if err != nil {
		fmt.Println(err)
		return
	}
	policy.SetEventLoopPolicy(p)
	defer policy.SetEventLoopPolicy(nil)

	loop, err := policy.NewEventLoop()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer loop.Close()
	fmt.Println(p.Name, "->", loop.Driver().Capabilities().Backend)
	// Output: poll -> poll
}

// An unknown name is an error that lists the names that would have worked.
func ExampleLookup() {
	_, err := policy.Lookup("kqueue")
	fmt.Println(errors.Is(err, policy.ErrUnknownPolicy))
	// Output: true
}

func ExampleNames() {
	for _, name := range policy.Names() {
		if name == "epoll" || name == "poll" {
			fmt.Println(name)
		}
	}
	// Output:
	// epoll
	// poll
}

// GetEventLoop gives the loop running on this goroutine, or else the current
// loop, built from the policy in force on first use.
func ExampleGetEventLoop() {
	loop, err := policy.GetEventLoop()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { loop.Close(); policy.SetEventLoop(nil) }()

	loop.CallSoon(func() {
		running, _ := policy.GetEventLoop()
		fmt.Println("same loop inside a callback:", running == loop)
		loop.Stop()
	})
	loop.RunForever()
	// Output: same loop inside a callback: true
}

// A program can register its own recipe, for instance poll with a small
// executor, and select it by name like the builtin ones.
//
// Register is meant for init functions and panics on a name registered
// twice; code that may run more than once checks with Lookup first.
func ExampleRegister() {
	if _, err := policy.Lookup("poll-small-executor"); errors.Is(err, policy.ErrUnknownPolicy) {
		policy.Register(policy.Policy{
			Name:            "poll-small-executor",
			Description:     "poll selector, at most two blocking calls at a time",
			Selector:        "poll",
			DefaultExecutor: func() kernel.Executor { return kernel.NewGoExecutor(2) },
		})
	}
	p, _ := policy.Lookup("poll-small-executor")
	fmt.Println(p.Name+":", p.Description)
	// Output: poll-small-executor: poll selector, at most two blocking calls at a time
}

// A command line names a policy and may override one family's back-end; the
// environment fills in what the flags leave out.
func ExampleChoose() {
	p, err := policy.Choose(policy.Flags{Policy: "epoll", Selector: "poll"})
	if err != nil {
		fmt.Println(err)
		return
	}
	sel, res, ex := p.Backends()
	fmt.Println(p.Name, sel, res, ex)

	_, err = policy.Choose(policy.Flags{Resolver: "dns-typo"})
	fmt.Println(errors.Is(err, sdk.ErrUnknownBackend))
	// Output:
	// epoll poll go goroutine
	// true
}
