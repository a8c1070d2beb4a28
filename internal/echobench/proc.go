package echobench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// processTreeCPU returns the user+system CPU time of pid and every live
// descendant (an out-of-process plugin is the server's child and its work
// is the server's cost).
func processTreeCPU(pid int) (time.Duration, error) {
	total, err := processCPU(pid)
	if err != nil {
		return 0, err
	}
	for _, child := range children(pid) {
		c, err := processTreeCPU(child)
		if err == nil {
			total += c
		}
	}
	return total, nil
}

// processCPU reads the CPU-time clock of process pid, in nanoseconds and
// counting every thread, live or exited: /proc/PID/stat's utime and stime
// tick in 10 ms, 1% of a one-second window, which is as much as the
// differences the bench is after.
func processCPU(pid int) (time.Duration, error) {
	// clock_getcpuclockid(3) for another process: the kernel's
	// MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED).
	id := int32((^pid)<<3 | 2)
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		return 0, fmt.Errorf("cpu of %d: %w", pid, err)
	}
	return time.Duration(ts.Nano()), nil
}

// processTreeSleeps counts the voluntary context switches of every live
// thread of pid and its descendants: how many times a server thread blocked
// (in epoll_wait, or on a futex handing work to another thread). Per
// request it measures batching, and the noise of other processes barely
// moves it, unlike CPU time (preemptions are the involuntary switches,
// which this leaves out).
func processTreeSleeps(pid int) int64 {
	var total int64
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue
		}
		_, rest, ok := strings.Cut(string(b), "\nvoluntary_ctxt_switches:")
		if !ok {
			continue
		}
		line, _, _ := strings.Cut(rest, "\n")
		if n, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64); err == nil {
			total += n
		}
	}
	for _, child := range children(pid) {
		total += processTreeSleeps(child)
	}
	return total
}

func children(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

var osGetpid = os.Getpid
