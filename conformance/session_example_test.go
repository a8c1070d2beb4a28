package conformance_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/plugins/selector"
)

// A Session runs several suites against one factory and fails fast: here
// a suite that requires the (failing) base suite is blocked, not run, and
// the summary counts it.
func ExampleSession() {
	base := conformance.Suite{Name: "base", Cases: []conformance.Case{
		{Name: "base/holds", Run: func(c *conformance.C) { require.True(c, false, "rule: the base holds") }},
	}}
	upper := conformance.Suite{Name: "upper", Requires: []string{"base"}, Cases: []conformance.Case{
		{Name: "upper/uses-base", Run: func(c *conformance.C) {}},
	}}
	ss, err := conformance.NewSession(selector.NewPoll, conformance.Options{Subject: "poll"})
	if err != nil {
		log.Fatal(err)
	}
	var all []conformance.Result
	for _, s := range []conformance.Suite{base, upper} {
		rs, err := ss.Run(context.Background(), s)
		if err != nil {
			log.Fatal(err)
		}
		all = append(all, rs...)
	}
	for _, r := range all {
		fmt.Println(r.Case, r.Status)
	}
	sum := conformance.Summarize(all)
	fmt.Println(sum.OK())
	fmt.Println(sum)
	// Output:
	// base/holds fail
	// upper/uses-base blocked
	// false
	// 2 cases: 0 pass, 0 skip, 1 fail, 0 hang, 1 blocked; supervision: 0 restarts, 0 crashes, 0 health failures, 0 protocol violations
}

// fakeResolver stands for a back-end of another family.
type fakeResolver struct{ closed bool }

func (r *fakeResolver) Lookup(name string) (string, error) {
	if name == "localhost" {
		return "127.0.0.1", nil
	}
	return "", errors.New("no such host")
}

// A suite of another family binds its own factory in its cases and runs
// with a nil selector Factory; C.Watch counts a supervised back-end's
// incidents (a plugin's restarts fail the case), and the statuses,
// summary and reports are the same as the selector suites'.
func ExampleC_Watch() {
	newResolver := func() *fakeResolver { return &fakeResolver{} }
	suite := conformance.Suite{Name: "resolver", Cases: []conformance.Case{
		{Name: "resolver/localhost", Run: func(c *conformance.C) {
			r := newResolver()
			c.Watch(r) // not supervised: ignored; a plugin's Remote* back-end would be counted
			c.Cleanup(func() { r.closed = true })
			addr, err := r.Lookup("localhost")
			require.NoError(c, err, "rule: localhost resolves")
			require.Equal(c, "127.0.0.1", addr, "rule: localhost is loopback")
		}},
	}}
	rs, err := conformance.Run(context.Background(), suite, nil, conformance.Options{Subject: "fake"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rs[0].Suite, rs[0].Subject, rs[0].Case, rs[0].Status, rs[0].Incidents.Zero())
	// Output: resolver fake resolver/localhost pass true
}
