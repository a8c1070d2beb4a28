package echobench

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// Pinning keeps the server and the client off each other's CPU, as the
// issue's independent load generator does (server on CPU 0, client on CPU
// 1). Unpinned, the scheduler may run both on one core for a while, and a
// server that wakes on the client's core waits for it or migrates: both
// change how many events each of the server's wakeups carries, which is
// what separates an event loop from the floor (bench/README.md).

// cpuPair returns two CPUs this process may run on, for the server and the
// client, and false when there are fewer than two.
func cpuPair() (server, client int, ok bool) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0, 0, false
	}
	var cpus []int
	for cpu := 0; cpu < 1024 && len(cpus) < 2; cpu++ {
		if set.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	if len(cpus) < 2 {
		return 0, 0, false
	}
	return cpus[0], cpus[1], true
}

// startOn starts cmd on cpu alone (any CPU when cpu < 0): the child
// inherits the mask of the thread that forks it, so that thread is locked,
// given the mask for the fork, and given its own back before it returns to
// the scheduler's pool.
func startOn(cmd *exec.Cmd, cpu int) error {
	if cpu < 0 {
		return cmd.Start()
	}
	runtime.LockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("pin: %w", err)
	}
	if err := pinThread(0, cpu); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	err := cmd.Start()
	if unix.SchedSetaffinity(0, &old) == nil {
		// Left locked otherwise, so that no other goroutine runs on a
		// pinned thread.
		runtime.UnlockOSThread()
	}
	return err
}

// pinThread sets the affinity of thread tid (0: the calling thread) to cpu
// alone.
func pinThread(tid, cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(tid, &set); err != nil {
		return fmt.Errorf("pin thread %d to CPU %d: %w", tid, cpu, err)
	}
	return nil
}

// pinTree pins every thread of pid and of its descendants (an
// out-of-process plugin is the server's child) to cpu. sched_setaffinity
// acts on one thread, and a thread inherits its creator's mask, so once
// every existing thread is pinned, every later one is too; the walk is
// repeated until it finds no thread left unpinned, which covers threads
// created while it ran.
func pinTree(pid, cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return setAffinity(pid, &set, true)
}

// pinSelf pins every thread of this process to cpu — how the Go engine,
// whose goroutines run on any of the runtime's threads, is kept on the
// client's CPU — and returns the function that puts back the mask the
// process had.
func pinSelf(cpu int) (restore func(), err error) {
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, fmt.Errorf("pin: %w", err)
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := setAffinity(os.Getpid(), &set, false); err != nil {
		setAffinity(os.Getpid(), &old, false)
		return nil, err
	}
	return func() { setAffinity(os.Getpid(), &old, false) }, nil
}

// setAffinity gives every thread of pid (and of its descendants when
// withChildren) the mask set, in passes until one changes nothing.
func setAffinity(pid int, set *unix.CPUSet, withChildren bool) error {
	for pass := 0; pass < 5; pass++ {
		changed, err := setAffinityOnce(pid, set, withChildren)
		if err != nil {
			return err
		}
		if !changed {
			return nil
		}
	}
	return fmt.Errorf("set the CPU affinity of process %d: threads kept appearing", pid)
}

func setAffinityOnce(pid int, set *unix.CPUSet, withChildren bool) (changed bool, err error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false, fmt.Errorf("set the CPU affinity of process %d: %w", pid, err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		var cur unix.CPUSet
		if unix.SchedGetaffinity(tid, &cur) == nil && cur == *set {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil {
			if _, gone := os.Stat(fmt.Sprintf("/proc/%d/task/%d", pid, tid)); gone != nil {
				continue // the thread exited meanwhile
			}
			return false, fmt.Errorf("set the CPU affinity of thread %d of process %d: %w", tid, pid, err)
		}
		changed = true
	}
	if withChildren {
		for _, child := range children(pid) {
			c, err := setAffinityOnce(child, set, true)
			if err != nil {
				return false, err
			}
			changed = changed || c
		}
	}
	return changed, nil
}
