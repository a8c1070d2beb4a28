//go:build !amd64 && !arm64

package kernel

import (
	"bytes"
	"runtime"
	"strconv"
)

// gkey identifies the calling goroutine by its id, parsed from runtime.Stack:
// correct everywhere but about a microsecond, where amd64 and arm64 read the
// goroutine's g in a nanosecond (gkey_asm.go). Ids are never reused.
func gkey() uintptr {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return uintptr(id)
}
