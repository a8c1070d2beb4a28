#include "textflag.h"

// func getg() uintptr
//
// On arm64 the runtime keeps the running goroutine's g in a register the
// assembler calls g (R28).
TEXT ·getg(SB), NOSPLIT, $0-8
	MOVD g, R0
	MOVD R0, ret+0(FP)
	RET
