package kernel_test

import (
	"testing"

	"github.com/loopkernel/loopkernel/bench"
)

// The toolkit's workloads live in package bench, as the loop's do, so that
// `loopkernel bench loop` runs exactly these next to asyncio and uvloop.

func BenchmarkGather1000(b *testing.B)     { bench.Gather(b, bench.EpollLoop) }
func BenchmarkQueuePutGet(b *testing.B)    { bench.QueuePutGet(b, bench.EpollLoop) }
func BenchmarkLockContention(b *testing.B) { bench.LockContention(b, bench.EpollLoop) }
func BenchmarkWaitFor(b *testing.B)        { bench.WaitForOverhead(b, bench.EpollLoop) }
