package conformance_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/plugins/selector"
)

// A command-line runner certifies a selector without the testing package:
// Run with a per-case limit and a progress callback, then a report.
func ExampleRun() {
	results, err := conformance.Run(context.Background(), conformance.SelectorSuite(), selector.NewPoll, conformance.Options{
		Match: func(name string) bool {
			return strings.HasPrefix(name, "selector/wake/") || name == "selector/regular-file"
		},
		Progress: func(r conformance.Result) {
			if r.Status != conformance.Running {
				fmt.Printf("%-31s %s\n", r.Case, r.Status)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	// A CI job writes the report to a file; here it only goes to a buffer.
	var junit bytes.Buffer
	if err := conformance.WriteJUnit(&junit, results); err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.Count(junit.String(), "<testcase "), "cases in the JUnit report")
	// Output:
	// selector/wake/interrupts-wait   pass
	// selector/wake/before-wait       pass
	// selector/wake/coalesces         pass
	// selector/wake/concurrent        pass
	// selector/regular-file           pass
	// 5 cases in the JUnit report
}
