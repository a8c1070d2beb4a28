package executor_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/loopkernel/loopkernel/plugins/executor"
	"github.com/loopkernel/loopkernel/sdk"
)

// Functions are registered by name in a package-level var, so that every
// process of the program (a worker re-executing it too) knows them.
var upper = sdk.NewFunc("example.upper", func(_ context.Context, s string) (string, error) {
	return strings.ToUpper(s), nil
})

func ExampleNewGoroutine() {
	ex := executor.NewGoroutine()
	defer ex.Close()
	got, err := upper.Call(context.Background(), ex, "hello")
	fmt.Println(got, err)
	// Output: HELLO <nil>
}
