package echobench

import (
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// probeRun is a Config.Probe command running over one measured window.
type probeRun struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// probeSpec is Config.Probe with the CPUs the probe may use: those this
// process had before any pinning, so it does not sit on the client's CPU
// alone.
type probeSpec struct {
	command string
	cpus    unix.CPUSet
}

// startProbe starts the probe command for server name at pid; a probe
// that cannot start is reported and skipped, never fatal to the
// measurement.
func startProbe(spec probeSpec, name string, pid int, lc LoadConfig, progress io.Writer) *probeRun {
	command := strings.NewReplacer("{pid}", strconv.Itoa(pid), "{name}", strings.ReplaceAll(name, "/", "-"),
		"{client}", string(lc.Engine), "{size}", strconv.Itoa(lc.Size), "{conns}", strconv.Itoa(lc.Conns)).Replace(spec.command)
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Stdout, cmd.Stderr = progress, progress
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(progress, "  probe %s: %s\n", name, command)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(progress, "  probe %s: %v\n", name, err)
		return nil
	}
	setAffinity(cmd.Process.Pid, &spec.cpus, true)
	p := &probeRun{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p
}

// stop sends SIGINT to the probe's process group (perf stat prints its
// counts on SIGINT) and waits for it, killing it after 5 s.
func (p *probeRun) stop() {
	if p == nil {
		return
	}
	pg := -p.cmd.Process.Pid
	syscall.Kill(pg, syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(pg, syscall.SIGKILL)
		<-p.done
	}
}
