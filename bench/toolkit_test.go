package bench

import (
	"context"
	"testing"
	"time"
)

// Each toolkit workload runs and checks its own work on the Go side, and
// its Python twin runs on asyncio (and uvloop when installed) with the same
// name, so `loopkernel bench loop` can put them side by side.
func TestToolkitWorkloadsRunOnBothSides(t *testing.T) {
	names := []string{"gather", "queue", "lock", "wait_for"}
	if err := setBenchTime(20 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		w, err := Find(name)
		if err != nil {
			t.Fatal(err)
		}
		failed := false
		res := testing.Benchmark(func(b *testing.B) {
			w.Bench(b, nil)
			failed = b.Failed()
		})
		if failed || res.N == 0 {
			t.Errorf("go workload %s failed", name)
		}
	}
	needPython(t)
	out, err := runPeers(context.Background(), DefaultPython, names, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if _, ok := out.Results["asyncio"][name]; !ok {
			t.Errorf("loop_peers.py gave no asyncio result for %s", name)
		}
	}
}
