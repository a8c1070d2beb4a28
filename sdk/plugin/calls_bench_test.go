//go:build !race

package plugin

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/sdk"
	pb "github.com/loopkernel/loopkernel/sdk/proto"
)

// BenchmarkCallRoundTrip compares one small executor call through the call
// plane of a worker process with one control-plane gRPC round trip (Health)
// to the same process: the cost the call plane exists to avoid. Besides
// wall time it reports the CPU time both processes spend per operation
// (this process's getrusage, the worker's from Stats), which a loaded
// machine disturbs much less than wall time.
func BenchmarkCallRoundTrip(b *testing.B) {
	be, err := Launch(context.Background(), sdk.Executors, Spec{Name: "funcs"})
	if err != nil {
		b.Fatal(err)
	}
	ex := be.(*RemoteExecutor)
	defer ex.Close()
	ctx := context.Background()
	measure := func(b *testing.B, op func() error) {
		b.ReportAllocs()
		host0, plug0 := hostCPU(b), workerCPU(b, ex)
		b.ResetTimer()
		for b.Loop() {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(b.N) }
		b.ReportMetric(per(hostCPU(b)-host0), "host-cpu-µs/op")
		b.ReportMetric(per(workerCPU(b, ex)-plug0), "plugin-cpu-µs/op")
	}
	b.Run("callplane", func(b *testing.B) {
		measure(b, func() error { _, err := ex.Call(ctx, "plugintest.pid", []byte("{}")); return err })
	})
	b.Run("grpc-control", func(b *testing.B) {
		measure(b, func() error { _, err := ex.proc.control.Health(ctx, &pb.HealthRequest{}); return err })
	})
	b.Run("callplane-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := ex.Call(ctx, "plugintest.pid", []byte("{}")); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func workerCPU(b *testing.B, ex *RemoteExecutor) time.Duration {
	st, err := ex.Stats(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return st.CPUUser + st.CPUSys
}

// BenchmarkCallRestart measures how long an executor plugin is away after
// its worker is SIGKILLed: from the kill to the first call that succeeds on
// the restarted worker (detection, restart, new call plane). Compare
// BenchmarkRestart, the same for a selector.
func BenchmarkCallRestart(b *testing.B) {
	be, err := Launch(context.Background(), sdk.Executors, Spec{Name: "funcs", MaxBackoff: time.Nanosecond})
	if err != nil {
		b.Fatal(err)
	}
	ex := be.(*RemoteExecutor)
	defer ex.Close()
	ctx := context.Background()
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		st, err := ex.Stats(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		_ = syscall.Kill(st.Pid, syscall.SIGKILL)
		for {
			got, err := pid.Call(ctx, ex, struct{}{})
			if err == nil && got != st.Pid {
				break
			}
		}
		total += time.Since(t0)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/restart")
}
