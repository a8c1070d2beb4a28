// Package proactor holds the bundled completion back-ends (sdk.Proactor):
// today the Linux io_uring one, "uring", written on raw system calls
// through golang.org/x/sys/unix (io_uring_setup, the mmap of the rings and
// entries, io_uring_enter, io_uring_register for a provided-buffer ring).
//
// It owns the ring and every byte of memory the kernel reads or writes for
// it (see Uring), and translates sdk.Submission records into submission
// entries and completion entries back into sdk.Completion records; it
// knows nothing of descriptors' lifetimes or callbacks, which are the
// completion driver's (driver/completion). It imports sdk only.
//
// Where io_uring is refused (no kernel support, the kernel.io_uring_disabled
// sysctl, a seccomp profile such as Docker's default) New fails with an
// error that wraps ErrRefused, says which, and names the epoll policy.
package proactor
