package proactor

import "github.com/loopkernel/loopkernel/sdk"

// The io_uring back-end registers itself as "uring" in sdk.Proactors, so
// that importing this package makes it selectable. The factory fails with
// an error wrapping ErrRefused where io_uring is refused.
func init() {
	sdk.Proactors.Register("uring", func() (sdk.Proactor, error) { return New() })
}
