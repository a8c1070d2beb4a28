package proactorplane

import (
	"errors"
	"sync/atomic"
	"syscall"
)

func loadU32(p *uint32) uint32 { return atomic.LoadUint32(p) }

func asErrno(err error, e *syscall.Errno) bool { return errors.As(err, e) }
