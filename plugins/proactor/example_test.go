package proactor_test

import (
	"errors"
	"fmt"

	"github.com/loopkernel/loopkernel/plugins/proactor"
)

// Checking for io_uring before choosing the proactor: a refusal wraps
// ErrRefused and its message names the cause and the epoll policy.
func ExampleAvailable() {
	if err := proactor.Available(); errors.Is(err, proactor.ErrRefused) {
		fmt.Println("falling back:", err)
		return
	}
	fmt.Println("io_uring available")
}
