package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func needPython(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(DefaultPython); err != nil {
		t.Skipf("no %s: %v", DefaultPython, err)
	}
}

// The timer workload's claim that both sides insert timers in the same
// order rests on the two shuffles agreeing.
func TestTimerDelaysMatchPython(t *testing.T) {
	needPython(t)
	out, err := exec.Command(DefaultPython, "-c", `
import importlib.util, json
spec = importlib.util.spec_from_file_location("peers", "loop_peers.py")
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
print(json.dumps([round(d * 1e9) for d in m.timer_delays()]))
`).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	var py []int64
	if err := json.Unmarshal(out, &py); err != nil {
		t.Fatalf("python output %q: %v", out, err)
	}
	goD := timerDelays()
	if len(py) != len(goD) {
		t.Fatalf("python has %d delays, Go %d", len(py), len(goD))
	}
	for i := range goD {
		if py[i] != goD[i].Nanoseconds() {
			t.Fatalf("delay %d: python %d ns, Go %d ns", i, py[i], goD[i].Nanoseconds())
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// A short end-to-end run: both sides measured, the report complete, the
// table naming every workload and peer.
func TestCompareSmoke(t *testing.T) {
	needPython(t)
	if testing.Short() {
		t.Skip("runs Python")
	}
	var progress bytes.Buffer
	rep, err := Compare(context.Background(), CompareOptions{
		Rounds:    2,
		BenchTime: 20 * time.Millisecond,
		Workloads: []string{"call_soon", "task_yield"},
		Progress:  &progress,
	})
	if err != nil {
		t.Fatalf("compare: %v\nprogress:\n%s", err, progress.String())
	}
	if len(rep.Rows) != 2 || rep.Python == "" {
		t.Fatalf("report: %+v", rep)
	}
	for _, row := range rep.Rows {
		if row.Go.NsPerOp <= 0 || len(row.Go.Rounds) != 2 || row.Go.AllocsPerOp == nil {
			t.Errorf("%s: loopkernel figures %+v", row.Name, row.Go)
		}
		a, ok := row.Peers["asyncio"]
		if !ok || a.NsPerOp <= 0 || len(a.Rounds) != 2 {
			t.Errorf("%s: asyncio figures %+v (present %v)", row.Name, a, ok)
		}
		if _, ok := row.Peers["uvloop"]; ok != (rep.UVLoop != "") {
			t.Errorf("%s: uvloop figures present %v, but uvloop version %q", row.Name, ok, rep.UVLoop)
		}
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"call_soon", "task_yield", "asyncio ratio", "CPU ns/op"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestCompareUnknownWorkload(t *testing.T) {
	_, err := Compare(context.Background(), CompareOptions{Workloads: []string{"nope"}})
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("err = %v, want an unknown-workload error", err)
	}
}
