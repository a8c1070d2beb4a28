package testkit

import (
	"errors"
	"testing"

	"github.com/loopkernel/loopkernel/plugins/proactor"
)

// NeedUring skips t, naming why, where io_uring is refused here (a seccomp
// profile, the io_uring_disabled sysctl, an old kernel), and fails it when
// the check itself fails for another reason: a test of the proactor should
// not pass silently on a machine that cannot run it.
func NeedUring(t testing.TB) {
	t.Helper()
	if err := proactor.Available(); err != nil {
		if errors.Is(err, proactor.ErrRefused) {
			t.Skipf("needs io_uring: %v", err)
		}
		t.Fatal(err)
	}
}
