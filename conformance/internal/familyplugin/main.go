// Command familyplugin is a third-party plugin of the resolver and executor
// families, as an author outside this repository would write one: the
// bundled dns resolver and goroutine executor served under the name
// "family", or, with FAMILYPLUGIN_MUTANT=NAME in its environment, the
// resolver or executor mutant NAME (conformance/internal/mutants) in their
// place. It links the conformance package, as an executor plugin must, for
// the functions the executor suite calls. The command's tests certify it
// from the command line:
//
//	go build -o /tmp/loopkernel-plugin-family ./conformance/internal/familyplugin
//	loopkernel conformance --suite resolver,executor --resolver plugin:/tmp/loopkernel-plugin-family --executor plugin:/tmp/loopkernel-plugin-family
//	FAMILYPLUGIN_MUTANT=drops-aaaa loopkernel conformance --suite resolver --resolver plugin:/tmp/loopkernel-plugin-family
package main

import (
	"fmt"
	"os"

	_ "github.com/loopkernel/loopkernel/conformance" // the executor suite's functions
	"github.com/loopkernel/loopkernel/conformance/internal/mutants"
	"github.com/loopkernel/loopkernel/plugins/executor"
	"github.com/loopkernel/loopkernel/plugins/resolver"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

func main() {
	b := plugin.Backends{
		Name:     "family",
		Resolver: func() (sdk.Resolver, error) { return resolver.NewDNS(resolver.DNSOptions{}), nil },
		Executor: func() (sdk.Executor, error) { return executor.NewGoroutine(), nil },
	}
	if name := os.Getenv("FAMILYPLUGIN_MUTANT"); name != "" {
		found := false
		for _, m := range mutants.Resolvers() {
			if m.Name == name {
				b.Resolver, found = m.New, true
			}
		}
		for _, m := range mutants.Executors() {
			if m.Name == name {
				b.Executor, found = m.New, true
			}
		}
		if !found {
			fmt.Fprintf(os.Stderr, "familyplugin: no resolver or executor mutant %q\n", name)
			os.Exit(2)
		}
	}
	plugin.Serve(b)
}
