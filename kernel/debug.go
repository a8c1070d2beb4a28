package kernel

import (
	"bytes"
	"fmt"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
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
		args := []any{"callback", funcName(h.fn), "took", dt}
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

// curGoroutineID reads the current goroutine's id from its stack header.
// Go hides goroutine identity on purpose; the kernel needs it only when a
// loop starts running and for debug-mode thread checks, never per callback
// in normal mode.
func curGoroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}

// running maps goroutine ids to the loop each is running, for
// RunningLoop and the one-loop-per-goroutine rule.
var running sync.Map // uint64 -> *Loop

// coroutines maps the goroutine of each live task or async-generator body
// to its loop, in debug mode only. iter.Pull runs a body on a goroutine of
// its own, so without this debug mode's goroutine check would refuse every
// call a coroutine makes (and silently drop the callbacks a task schedules
// when it completes), and a coroutine could run a second loop inside its
// own. Finding a goroutine's id costs microseconds, which is why only debug
// mode pays it.
var coroutines sync.Map // uint64 -> *Loop

// registerCoroutine records the calling coroutine goroutine as acting for l
// and returns its id for unregisterCoroutine.
func (l *Loop) registerCoroutine() uint64 {
	gid := curGoroutineID()
	coroutines.Store(gid, l)
	return gid
}

func unregisterCoroutine(gid uint64) {
	if gid != 0 {
		coroutines.Delete(gid)
	}
}

// checkGoroutine is debug mode's goroutine check on its own, for calls that
// are not refused on a closed loop. Completing a future from a foreign
// goroutine must fail loudly: otherwise the CallSoon that schedules its done
// callbacks fails inside it, the callbacks are dropped and whoever awaits the
// future hangs without a word.
func (l *Loop) checkGoroutine() error {
	if l.debug && l.running {
		if gid := curGoroutineID(); gid != l.goid && !actsFor(gid, l) {
			return ErrWrongGoroutine
		}
	}
	return nil
}

// actsFor reports whether goroutine gid is a coroutine of l (debug mode).
func actsFor(gid uint64, l *Loop) bool {
	owner, ok := coroutines.Load(gid)
	return ok && owner.(*Loop) == l
}

func enterRunning(gid uint64, l *Loop) error {
	if owner, ok := coroutines.Load(gid); ok {
		if owner.(*Loop) == l {
			return ErrRunning
		}
		return ErrOtherLoopRunning
	}
	if other, loaded := running.LoadOrStore(gid, l); loaded {
		if other.(*Loop) == l {
			return ErrRunning
		}
		return ErrOtherLoopRunning
	}
	return nil
}

func leaveRunning(gid uint64) { running.Delete(gid) }

// RunningLoop returns the loop running on the calling goroutine, or nil
// (asyncio: get_running_loop, which raises instead of returning None).
// A task's coroutine runs on a goroutine of its own, where RunningLoop
// returns nil: a coroutine reaches its loop through Co.Loop.
func RunningLoop() *Loop {
	if l, ok := running.Load(curGoroutineID()); ok {
		return l.(*Loop)
	}
	return nil
}
