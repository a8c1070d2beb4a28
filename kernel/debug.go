package kernel

import (
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"time"
)

// GetDebug reports whether debug mode is on.
func (l *Loop) GetDebug() bool { return l.debug }

// SetDebug turns debug mode on or off. In debug mode the loop logs
// callbacks slower than SlowCallbackDuration with their source, records where
// each callback was scheduled, and rejects non-thread-safe calls from
// goroutines other than the loop's with ErrWrongGoroutine.
func (l *Loop) SetDebug(on bool) { l.debug = on }

// SlowCallbackDuration is the debug-mode threshold above which a callback is
// logged (asyncio: loop.slow_callback_duration; 100 ms by default).
func (l *Loop) SlowCallbackDuration() time.Duration { return l.slowCallback }

// SetSlowCallbackDuration sets the debug-mode slow-callback threshold.
func (l *Loop) SetSlowCallbackDuration(d time.Duration) { l.slowCallback = d }

// runTimed is run's debug-mode path: it times the callback and logs it with
// its source and scheduling site when it took too long.
func (l *Loop) runTimed(h *handle) {
	t0 := time.Now()
	l.call(h)
	if dt := time.Since(t0); dt >= l.slowCallback {
		args := []any{"callback", h.callbackName(), "took", dt}
		if h.src != 0 {
			if f := runtime.FuncForPC(h.src); f != nil {
				file, line := f.FileLine(h.src)
				args = append(args, "scheduled_at", fmt.Sprintf("%s:%d", file, line))
			}
		}
		l.logger.Warn(fmt.Sprintf("Executing %s took %.3f seconds", h.String(), dt.Seconds()), args...)
	}
}

// kernelFuncPrefix starts the name of every function of this package.
var kernelFuncPrefix = reflect.TypeFor[Loop]().PkgPath() + "."

// callerPC is the PC of the first caller outside the kernel, recorded in
// debug mode so slow or failing callbacks can be traced to where they were
// scheduled. A fixed depth would name the kernel's own CallSoon, CallAt or
// SetResult instead, since scheduling reaches newHandle by several paths.
func callerPC() uintptr {
	var pcs [16]uintptr
	n := runtime.Callers(3, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		if f.Function != "" && !strings.HasPrefix(f.Function, kernelFuncPrefix) {
			return f.PC
		}
		if !more {
			break
		}
	}
	if n > 0 {
		return pcs[0]
	}
	return 0
}

// checkGoroutine is debug mode's goroutine check on its own, for calls that
// are not refused on a closed loop. Completing a future from a foreign
// goroutine must fail loudly: otherwise the CallSoon that schedules its done
// callbacks fails inside it, the callbacks are dropped and whoever awaits the
// future hangs without a word.
func (l *Loop) checkGoroutine() error {
	if l.debug && l.running && goroutines.lookup(gkey()) != l {
		return ErrWrongGoroutine
	}
	return nil
}
