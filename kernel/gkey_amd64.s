#include "textflag.h"

// func getg() uintptr
//
// The runtime keeps the running goroutine's g in thread-local storage; the
// assembler turns (TLS) into the right access for the build mode.
TEXT ·getg(SB), NOSPLIT, $0-8
	MOVQ (TLS), AX
	MOVQ AX, ret+0(FP)
	RET
