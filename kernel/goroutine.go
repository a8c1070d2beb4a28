package kernel

import "sync"

// Which loop is the calling goroutine acting for?
//
// Two kinds of goroutine run a loop's code: the one in RunForever, which runs
// the callbacks, and the coroutine goroutine of each live task and async
// generator (iter.Pull gives every coroutine a goroutine of its own, and the
// loop switches to it directly while the loop's goroutine waits). Go has no
// goroutine-local storage, so the kernel keeps its own: a table from goroutine
// to loop, written when a goroutine starts acting for a loop (RunForever
// entered, a coroutine body started) and erased before it stops (RunForever
// returning, the body returning), and read by RunningLoop, the one-loop-per-
// goroutine rule, and debug mode's goroutine check.
//
// The key is gkey(): the address of the goroutine's runtime g on amd64 and
// arm64 (about a nanosecond), its id elsewhere. A g is reused once its
// goroutine has exited, which is why no entry outlives its goroutine.
//
// Costs: a lookup is a read lock on one of gshards shards and a map read
// (about 20 ns, no allocation: BenchmarkRunningLoop); a coroutine pays one
// insert and one delete over its whole life, never per switch. Keeping the
// loop's current goroutine in an atomic instead would cost every task switch
// two atomic stores, and switches outnumber task lives by far.
var goroutines gtable

const gshards = 64 // a power of two

type gtable struct{ shards [gshards]gshard }

// gshard is padded to a cache line so loops on different cores creating and
// ending tasks do not share one.
type gshard struct {
	mu sync.RWMutex
	m  map[uintptr]*Loop
	_  [64 - 32]byte
}

func (t *gtable) shard(k uintptr) *gshard {
	// Fibonacci hashing: g addresses are aligned and clustered, their
	// product's top bits are not.
	return &t.shards[uint64(k)*0x9E3779B97F4A7C15>>58]
}

// lookup returns the loop goroutine k acts for, or nil.
func (t *gtable) lookup(k uintptr) *Loop {
	s := t.shard(k)
	s.mu.RLock()
	l := s.m[k]
	s.mu.RUnlock()
	return l
}

// enter records that goroutine k acts for l, unless it already acts for a
// loop: the same one (ErrRunning) or another (ErrOtherLoopRunning).
func (t *gtable) enter(k uintptr, l *Loop) error {
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if other := s.m[k]; other != nil {
		if other == l {
			return ErrRunning
		}
		return ErrOtherLoopRunning
	}
	if s.m == nil {
		s.m = make(map[uintptr]*Loop)
	}
	s.m[k] = l
	return nil
}

// leave erases goroutine k's entry.
func (t *gtable) leave(k uintptr) {
	s := t.shard(k)
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
}

// registerCoroutine records the calling coroutine goroutine, new and so
// never in the table, as acting for l, and returns its key (never 0) for
// unregisterCoroutine, which the body defers so the entry goes before the
// goroutine does. A coroutine goroutine that runs several bodies one after
// another for the same loop registers once.
func (l *Loop) registerCoroutine() uint64 {
	k := gkey()
	goroutines.enter(k, l)
	return uint64(k)
}

// unregisterCoroutine erases what registerCoroutine recorded; 0 is no
// registration.
func unregisterCoroutine(k uint64) {
	if k != 0 {
		goroutines.leave(uintptr(k))
	}
}

// RunningLoop returns the loop running on the calling goroutine, or nil
// (asyncio: get_running_loop, which raises instead of returning None). Inside
// a callback and inside a task's or async generator's coroutine, which runs
// on a goroutine of its own, it is the loop running them; on any other
// goroutine, or while the loop is not running (a coroutine started eagerly
// before the loop runs), it is nil. It costs a table lookup, no allocation.
func RunningLoop() *Loop {
	if l := goroutines.lookup(gkey()); l != nil && l.running {
		return l
	}
	return nil
}
