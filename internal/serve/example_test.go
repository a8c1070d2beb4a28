package serve_test

import (
	"fmt"
	"time"

	"github.com/loopkernel/loopkernel/internal/serve"
)

// The limits a server gets when none are given, and a stricter set for a
// server behind nothing: each field is one `serve` flag.
func ExampleDefaultLimits() {
	http := serve.DefaultLimits("http")
	echo := serve.DefaultLimits("echo")
	fmt.Println("http: head within", http.HeaderTimeout, "idle", http.IdleTimeout, "body up to", http.MaxBodyBytes, "bytes")
	fmt.Println("echo: idle", echo.IdleTimeout)

	strict := http
	strict.HeaderTimeout = 5 * time.Second
	strict.MaxBodyBytes = 0 // no limit: only the body timeout bounds a body
	fmt.Println("strict: head within", strict.HeaderTimeout, "follow symlinks:", strict.FollowSymlinks)
	// Output:
	// http: head within 20s idle 1m0s body up to 1048576 bytes
	// echo: idle 5m0s
	// strict: head within 5s follow symlinks: false
}
