package conformance

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/loopkernel/loopkernel/kernel"
)

// The process contract: pipe transports (ConnectReadPipe,
// ConnectWritePipe), subprocesses (SubprocessExec, SubprocessShell, their
// transport and protocol) and the high-level streams.Process, on loops
// built as the networking suite builds them (NetConfig: the factory's
// selectors, or any I/O driver). A child's pipes are streams on the loop's
// driver and its exit is a pidfd watched there, so a selector or driver
// that loses readiness shows up here as a child whose output never ends
// or whose exit is never seen.

// ProcessSuite returns the process contract for cfg (the networking
// suite's configuration: the same loops).
func ProcessSuite(cfg NetConfig) Suite {
	return loopSuite("process", cfg, processPipeCases, processCases, processStreamCases)
}

// RunProcess binds every process case to t as a subtest, each loop built on
// a selector from f. Run it with -race.
func RunProcess(t *testing.T, f Factory, cfg ...NetConfig) {
	t.Helper()
	var nc NetConfig
	if len(cfg) > 0 {
		nc = cfg[0]
	}
	RunSuite(t, ProcessSuite(nc), f)
}

// needTool skips the case unless every named program is in PATH.
func (n *nt) needTool(names ...string) {
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			n.Skip(fmt.Sprintf("needs the program %s, not found in PATH", name))
		}
	}
}

// procProto records what a SubprocessProtocol is told, in order.
type procProto struct {
	tr     kernel.SubprocessTransport
	events []string // made, exited, pipe-lost:N, lost
	out    [3]bytes.Buffer
	n      [3]int // bytes received per fd (kept or not)
	keep   bool   // keep received bytes in out (else only count them)
	check  *patternCheck
	pipe   [3]error
	lost   bool
	lerr   error
	exited bool
	// onMade, if set, runs at the end of ConnectionMade.
	onMade func(p *procProto)
}

func newProcProto() *procProto { return &procProto{keep: true} }

func (p *procProto) ConnectionMade(t kernel.BaseTransport) {
	p.tr = t.(kernel.SubprocessTransport)
	p.events = append(p.events, "made")
	if p.onMade != nil {
		p.onMade(p)
	}
}

func (p *procProto) PipeDataReceived(fd int, b []byte) {
	p.n[fd] += len(b)
	if p.check != nil && fd == 1 {
		p.check.feed(b)
	}
	if p.keep {
		p.out[fd].Write(b)
	}
}

func (p *procProto) PipeConnectionLost(fd int, err error) {
	p.pipe[fd] = err
	p.events = append(p.events, "pipe-lost:"+strconv.Itoa(fd))
}

func (p *procProto) ProcessExited() {
	p.exited = true
	p.events = append(p.events, "exited")
}

func (p *procProto) ConnectionLost(err error) {
	p.lost, p.lerr = true, err
	p.events = append(p.events, "lost")
}

// checkOrder verifies asyncio's ordering rules on what p saw: ConnectionMade
// first, ConnectionLost last and once, after ProcessExited and after every
// PipeConnectionLost, each of those once.
func (n *nt) checkOrder(p *procProto, pipes int) {
	n.Helper()
	ev := p.events
	if len(ev) == 0 || ev[0] != "made" {
		n.Errorf("rule: ConnectionMade comes first; saw %v", ev)
		return
	}
	if ev[len(ev)-1] != "lost" || strings.Count(strings.Join(ev, " "), "lost") != pipes+1 {
		n.Errorf("rule: ConnectionLost comes last, once, after %d PipeConnectionLost; saw %v", pipes, ev)
	}
	seen := map[string]int{}
	for _, e := range ev {
		seen[e]++
	}
	if seen["exited"] != 1 {
		n.Errorf("rule: ProcessExited is called exactly once; saw %v", ev)
	}
	for e, k := range seen {
		if k != 1 {
			n.Errorf("rule: %s is reported once; saw %v", e, ev)
		}
	}
	if p.lerr != nil {
		n.Errorf("rule: a subprocess's ConnectionLost gets nil; got %v", p.lerr)
	}
}

// patternCheck checks a stream against pattern bytes repeated, without
// keeping it.
type patternCheck struct {
	off int
	bad int // offset of the first wrong byte, -1 if none
}

func newPatternCheck() *patternCheck { return &patternCheck{bad: -1} }

func (c *patternCheck) feed(b []byte) {
	pat := bigPattern()
	for len(b) > 0 {
		i := c.off % len(pat)
		k := min(len(b), len(pat)-i)
		if c.bad < 0 && !bytes.Equal(b[:k], pat[i:i+k]) {
			for j := range k {
				if b[j] != pat[i+j] {
					c.bad = c.off + j
					break
				}
			}
		}
		c.off += k
		b = b[k:]
	}
}

// children lists this process's children that the kernel still has (as
// "pid state" strings); a zombie has state Z.
func children() []string {
	me := strconv.Itoa(os.Getpid())
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut after ')'.
		s := string(b)
		r := strings.LastIndexByte(s, ')')
		if r < 0 {
			continue
		}
		f := strings.Fields(s[r+1:])
		if len(f) >= 2 && f[1] == me {
			out = append(out, e.Name()+" "+f[0]+" "+strings.Trim(s[strings.IndexByte(s, '('):r+1], "()"))
		}
	}
	return out
}

// childPids returns the pids of this process's children.
func childPids() map[string]bool {
	m := map[string]bool{}
	for _, c := range children() {
		m[strings.Fields(c)[0]] = true
	}
	return m
}

// newChildren returns the children that were not in before (a plugin
// process of the placement under test is a child too, and it may go away
// when its loop is closed).
func newChildren(before map[string]bool) []string {
	var out []string
	for _, c := range children() {
		if !before[strings.Fields(c)[0]] {
			out = append(out, c)
		}
	}
	return out
}

// zombies returns the children in state Z that were not in before.
func zombies(before map[string]bool) []string {
	var z []string
	for _, c := range newChildren(before) {
		if f := strings.Fields(c); len(f) >= 2 && f[1] == "Z" {
			z = append(z, c)
		}
	}
	return z
}

// alive reports whether pid still exists (as anything, a zombie included).
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}
