package kernel

// TimerHeapLen is the number of timers in l's heap, cancelled ones still
// waiting to be swept included, so the contract tests can check that
// cancelling timers cannot grow the heap without bound.
func TimerHeapLen(l *Loop) int { return len(l.timers) }
