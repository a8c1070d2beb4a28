package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loopkernel/loopkernel/plugins/executor"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// The executor contract: what an sdk.Executor back-end promises a program
// that runs registered functions on it (kernel.CallFunc, asyncio's
// run_in_executor): results and errors come back as the function left them,
// a panic is the call's error, a cancelled call never starts or is
// abandoned, and, for back-ends that run functions in other processes, a
// worker that dies fails its own call only. The functions the cases call
// are registered below from this package's init, so a worker that is the
// program re-executed (a test binary or loopkernel itself) has them.

// ExecutorConfig describes one executor under test.
type ExecutorConfig struct {
	// Name is the subject in reports: a back-end and placement, e.g.
	// "process" or "plugin:goroutine".
	Name string
	// New makes a fresh executor; each case makes its own and closes it.
	New func() (sdk.Executor, error)
	// Caps says what the executor offers beyond the common contract; a
	// case that needs something it lacks is skipped with the capability
	// named.
	Caps ExecutorCaps
}

// ExecutorCaps are an executor's optional capabilities, by the names the
// skip reasons use.
type ExecutorCaps struct {
	// Isolated ("crash-isolation"): functions run in other processes, and
	// a process that dies (os.Exit, a fatal panic, SIGKILL) fails only the
	// call it was running, with an error wrapping sdk.ErrBackendDied that
	// says how it ended; the executor goes on.
	Isolated bool
	// Workers ("queue"): how many calls run at once; a call beyond them
	// waits for a worker. 0: no limit.
	Workers int
	// Capacity ("bounded-queue"): how many calls may be running or waiting
	// at once; the next one is pushed back (it waits for room, or with
	// FailFast fails at once). 0: no bound.
	Capacity int
	FailFast bool
	// Grace ("abandon"): a call whose caller gave up while it ran, and
	// whose function ignores its context, is stopped (its worker process
	// killed) within Grace. 0: such a function runs to its end.
	Grace time.Duration
	// LargePayloads ("large-payloads"): arguments and results of 100 MiB.
	LargePayloads bool
}

// missingExec returns why caps lacks need, or "" if it has it.
func missingExec(cfg ExecutorConfig, need string) string {
	caps := cfg.Caps
	have := map[string]bool{
		"":                true,
		"crash-isolation": caps.Isolated,
		"queue":           caps.Workers > 0,
		"bounded-queue":   caps.Capacity > 0,
		"abandon":         caps.Grace > 0,
		"large-payloads":  caps.LargePayloads,
	}
	ok, known := have[need]
	switch {
	case !known:
		return fmt.Sprintf("unknown executor capability %q", need)
	case !ok:
		return fmt.Sprintf("needs executor capability %s; executor %q lacks it", need, cfg.Name)
	}
	return ""
}

// ExecutorSuite returns the executor contract bound to cfg.
func ExecutorSuite(cfg ExecutorConfig) Suite {
	cases := make([]Case, 0, len(executorCases))
	for _, ec := range executorCases {
		needs := ""
		if ec.needs != "" {
			needs = "executor:" + ec.needs
		}
		cases = append(cases, Case{Name: ec.name, Needs: needs, Alone: ec.alone, Run: func(c *C) {
			if why := missingExec(cfg, ec.needs); why != "" {
				c.Skip(why)
			}
			ec.run(&et{C: c, cfg: cfg})
		}})
	}
	return Suite{Name: "executor", Cases: cases, Timeout: executorTimeout}
}

// RunExecutor binds every executor case to t as a subtest, through a
// Session as RunSuite does (a hang blocks the cases after it). The cases
// need no selector. Run it with -race.
func RunExecutor(t *testing.T, cfg ExecutorConfig) {
	t.Helper()
	runSuite(t, ExecutorSuite(cfg), nil, cfg.Name)
}

// ExecutorBinding makes the ExecutorConfig of an executor spec, of the
// forms every family takes (plugin.Resolve: NAME, plugin:NAME,
// plugin:PATH), with the capabilities the placement gives:
//
//   - the bundled goroutine executor in process: the common contract and
//     100 MiB payloads;
//   - the bundled process pool in process: built with 2 workers, a queue of
//     2 and a 300 ms grace, so that the queue, back-pressure and abandon
//     cases run too (the registry's pool takes its defaults: no queue
//     bound, which nothing could push back);
//   - any back-end in a plugin process (opts supplies the plugin directory
//     and Spec template): crash isolation, the plugin process being the
//     worker;
//   - another back-end compiled in: the common contract.
//
// The cases call functions this package registers (conformance.double
// and others): a plugin program must import this package to have them.
// A plugin is started once here to check that it does, so that a program
// without them is refused with that said, not failed case by case.
func ExecutorBinding(spec string, opts plugin.Options) (ExecutorConfig, error) {
	open := func() (sdk.Executor, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return plugin.Open(ctx, sdk.Executors, spec, opts)
	}
	cfg := ExecutorConfig{Name: spec, New: open}
	switch name, out := strings.CutPrefix(spec, "plugin:"); {
	case out:
		cfg.Caps = ExecutorCaps{Isolated: true}
		if err := probeFunctions(spec, open); err != nil {
			return ExecutorConfig{}, err
		}
	case name == executor.ProcessName:
		const grace = 300 * time.Millisecond
		cfg.New = func() (sdk.Executor, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return executor.NewPool(ctx, executor.PoolOptions{Workers: 2, Queue: 2, Grace: grace})
		}
		cfg.Caps = ExecutorCaps{Isolated: true, Workers: 2, Capacity: 4, Grace: grace, LargePayloads: true}
	case name == sdk.DefaultExecutor:
		cfg.Caps = ExecutorCaps{LargePayloads: true}
	default:
		if _, ok := sdk.Executors.Lookup(name); !ok {
			return ExecutorConfig{}, fmt.Errorf("executor %q: %w (have %v, or plugin:NAME, plugin:PATH)", spec, sdk.ErrUnknownBackend, sdk.Executors.Names())
		}
	}
	return cfg, nil
}

// probeFunctions starts the executor once and calls one of the suite's
// functions.
func probeFunctions(spec string, open func() (sdk.Executor, error)) error {
	ex, err := open()
	if err != nil {
		return err
	}
	defer ex.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = execDouble.Call(ctx, ex, 1)
	if errors.Is(err, sdk.ErrUnknownFunc) {
		return fmt.Errorf("executor %q lacks the functions the executor suite calls (%s and others): "+
			"its program must import github.com/loopkernel/loopkernel/conformance, which registers them: %w",
			spec, execDouble.Name(), err)
	}
	if err != nil {
		return fmt.Errorf("executor %q: a first call failed: %w", spec, err)
	}
	return nil
}

// executorTimeout bounds one executor case: longer than DefaultTimeout,
// since moving 100 MiB through two processes built with -race takes tens
// of seconds on a loaded machine.
const executorTimeout = 3 * DefaultTimeout

// ecase is an executor case before it is bound to a configuration.
type ecase struct {
	name  string
	needs string // an executor capability, see missingExec
	alone bool
	run   func(e *et)
}

// et is what an executor case body works with.
type et struct {
	*C
	cfg ExecutorConfig
}

// execSettle bounds how long a case waits for something a working
// executor does in milliseconds (a worker replaced, a marker written).
const execSettle = 15 * time.Second

// newExecutor makes the executor under test, closed when the case ends.
func (e *et) newExecutor() sdk.Executor {
	ex, err := e.cfg.New()
	if err != nil {
		e.Errorf("executor %q: %v", e.cfg.Name, err)
		e.FailNow()
	}
	e.Cleanup(func() { ex.Close() })
	// A plugin's restarts fail the case unless it provoked them: an
	// executor that passes only because its supervisor restarted it has
	// not conformed.
	e.Watch(ex)
	return ex
}

// dir is a fresh directory for the markers by which a function in another
// process tells the case what it did.
func (e *et) dir() string {
	d, err := os.MkdirTemp("", "loopkernel-executor-*")
	if err != nil {
		e.Errorf("temporary directory: %v", err)
		e.FailNow()
	}
	e.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// waitFile waits for path to exist with its contents and returns them.
func (e *et) waitFile(path, what string) string {
	deadline := time.Now().Add(execSettle)
	for {
		// Every marker has content; an empty one is still being written
		// (os.WriteFile creates the file, then writes it).
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return string(b)
		}
		if time.Now().After(deadline) || e.Context().Err() != nil {
			e.Errorf("%s: %s never appeared", what, filepath.Base(path))
			e.FailNow()
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Functions the cases run. Markers are files: the one channel every
// placement shares with the case.
var (
	execDouble = sdk.NewFunc("conformance.double", func(_ context.Context, x int) (int, error) { return 2 * x, nil })
	execFail   = sdk.NewFunc("conformance.fail", func(_ context.Context, msg string) (int, error) {
		return 0, fmt.Errorf("%s", msg)
	})
	execPanic = sdk.NewFunc("conformance.panic", func(_ context.Context, msg string) (int, error) { panic(msg) })
	execExit  = sdk.NewFunc("conformance.exit", func(_ context.Context, code int) (int, error) {
		os.Exit(code)
		return 0, nil
	})
	execGoPanic = sdk.NewFunc("conformance.panic-elsewhere", func(_ context.Context, msg string) (int, error) {
		// Nothing may signal the panic back to this goroutine: a deferred
		// close runs while the goroutine panics, before the runtime ends
		// the process, and this call could answer in that window.
		go func() { panic(msg) }()
		time.Sleep(time.Hour) // never ends: the panic ends the process
		return 0, nil
	})
	execPid = sdk.NewFunc("conformance.pid", func(context.Context, struct{}) (int, error) { return os.Getpid(), nil })
	// execWait writes its pid to Started, then waits for Release to exist
	// (or, unless Ignore, for its context to end), then writes Done with
	// how it ended.
	execWait = sdk.NewFunc("conformance.wait", func(ctx context.Context, a waitArg) (string, error) {
		if a.Started != "" {
			if err := os.WriteFile(a.Started, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
				return "", err
			}
		}
		how := "released"
		deadline := time.Now().Add(time.Duration(a.MaxMS) * time.Millisecond)
		for {
			if a.Release != "" {
				if _, err := os.Stat(a.Release); err == nil {
					break
				}
			}
			if !a.Ignore && ctx.Err() != nil {
				how = "context: " + ctx.Err().Error()
				break
			}
			if time.Now().After(deadline) {
				how = "timed out"
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		if a.Done != "" {
			_ = os.WriteFile(a.Done, []byte(how), 0o600)
		}
		return how, nil
	})
)

type waitArg struct {
	Started, Release, Done string
	Ignore                 bool
	MaxMS                  int
}

func init() {
	// Raw functions for large payloads: JSON would spend its time on
	// base64, not on the executor.
	sdk.RegisterFunc("conformance.checksum", func(_ context.Context, b []byte) ([]byte, error) {
		return []byte(fmt.Sprintf("%d:%d", len(b), checksum(b))), nil
	})
	sdk.RegisterFunc("conformance.produce", func(_ context.Context, b []byte) ([]byte, error) {
		n, err := strconv.Atoi(string(b))
		if err != nil {
			return nil, err
		}
		return execPattern(n), nil
	})
}

// checksum is position-dependent, so a misplaced chunk shows.
func checksum(b []byte) uint64 {
	var s uint64
	for i := 0; i+8 <= len(b); i += 4096 {
		s = s*31 + uint64(b[i]) + uint64(b[i+7])<<8
	}
	for _, x := range b[len(b)&^4095:] {
		s = s*31 + uint64(x)
	}
	return s + uint64(len(b))
}

// patternChecksum is checksum(execPattern(n)) without the allocation.
func patternChecksum(n int) uint64 {
	at := func(i int) byte {
		switch i % 4096 {
		case 0:
			return byte(i >> 12)
		case 7:
			return byte((i - 7) >> 20)
		}
		return 0
	}
	var s uint64
	for i := 0; i+8 <= n; i += 4096 {
		s = s*31 + uint64(at(i)) + uint64(at(i+7))<<8
	}
	for i := n &^ 4095; i < n; i++ {
		s = s*31 + uint64(at(i))
	}
	return s + uint64(n)
}

func execPattern(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		b[i] = byte(i >> 12)
		if i+7 < n {
			b[i+7] = byte(i >> 20)
		}
	}
	return b
}

// mentions reports whether err's text has any of words.
func mentions(err error, words ...string) bool {
	for _, w := range words {
		if strings.Contains(err.Error(), w) {
			return true
		}
	}
	return false
}
