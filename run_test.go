package loopkernel_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel"
	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/policy"
)

// programEnv names a program of programs for this test binary to run
// instead of its tests: the subprocess tests re-execute the binary with it.
const programEnv = "LOOPKERNEL_RUN_TEST_PROGRAM"

func TestMain(m *testing.M) {
	if name := os.Getenv(programEnv); name != "" {
		os.Exit(programs[name]())
	}
	os.Exit(m.Run())
}

// programs are small main functions built on Run, each printing what it
// saw on stdout, one fact a line, for the parent test to check.
var programs = map[string]func() int{
	// interrupted waits in its main coroutine for an executor call that
	// blocks until its context ends, with another task in flight, and
	// reports how everything ended once a signal came.
	"interrupted": func() int {
		_, err := loopkernel.Run(context.Background(), func(co *kernel.Co) (struct{}, error) {
			l := co.Loop()
			child, err := kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
				err := co.Sleep(time.Hour)
				fmt.Println("child ended:", errors.Is(err, kernel.ErrCancelled))
				return struct{}{}, err
			})
			if err != nil {
				return struct{}{}, err
			}
			_ = child
			blocking, err := kernel.RunInExecutor(l, nil, func(ctx context.Context) (int, error) {
				<-ctx.Done()
				fmt.Println("executor function ended:", ctx.Err())
				return 0, ctx.Err()
			})
			if err != nil {
				return struct{}{}, err
			}
			fmt.Println("ready")
			_, err = blocking.Await(co)
			fmt.Println("main cancelled:", errors.Is(err, kernel.ErrCancelled))
			return struct{}{}, err
		})
		fmt.Println("interrupted:", errors.Is(err, loopkernel.ErrInterrupted))
		fmt.Println("cancelled:", errors.Is(err, kernel.ErrCancelled))
		return 0
	},
	// plugin prints before Run, as a program may, then does I/O on the
	// loop: under a plugin policy its own binary, re-executed, serves the
	// selector.
	"plugin": func() int {
		fmt.Println("before run")
		backend, err := loopkernel.Run(context.Background(), func(co *kernel.Co) (string, error) {
			if err := co.Sleep(time.Millisecond); err != nil {
				return "", err
			}
			return co.Loop().Driver().Capabilities().Backend, nil
		})
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Println("selector:", backend)
		return 0
	},
}

// program starts this test binary as the named program and returns it with
// its stdout.
func program(t *testing.T, name string, env ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), programEnv+"="+name), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, bufio.NewScanner(out)
}

// TestRunSIGINT: a SIGINT cancels the main coroutine; Run then cancels the
// other task, ends the executor function's context, and returns an error
// matching ErrInterrupted and kernel.ErrCancelled (asyncio.Runner's
// SIGINT handling, test_runners' test_signal_install_not_supported_ok and
// friends).
func TestRunSIGINT(t *testing.T) {
	cmd, out := program(t, "interrupted")
	require.True(t, out.Scan(), "the program said nothing")
	require.Equal(t, "ready", out.Text())
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	var lines []string
	for out.Scan() {
		lines = append(lines, out.Text())
	}
	require.NoError(t, cmd.Wait(), "the program exits normally after its interruption")
	require.ElementsMatch(t, []string{
		"main cancelled: true", "child ended: true", "executor function ended: context canceled",
		"interrupted: true", "cancelled: true",
	}, lines)
	require.Equal(t, []string{"interrupted: true", "cancelled: true"}, lines[len(lines)-2:], "Run returns after the clean-up: %q", lines)
}

// TestRunPluginPolicy: a program using Run works under a plugin policy
// even if it writes to stdout before Run: its binary, re-executed as the
// plugin, serves the selector from package initialisation.
func TestRunPluginPolicy(t *testing.T) {
	cmd, out := program(t, "plugin", policy.EnvVar+"=poll-plugin")
	var lines []string
	for out.Scan() {
		lines = append(lines, out.Text())
	}
	require.NoError(t, cmd.Wait(), "output: %q", lines)
	require.Equal(t, []string{"before run", "selector: poll"}, lines)
}

func TestRunResultAndShutdown(t *testing.T) {
	var order []string
	v, err := loopkernel.Run(context.Background(), func(co *kernel.Co) (int, error) {
		l := co.Loop()
		require.Same(t, l, kernel.RunningLoop(), "RunningLoop inside the main coroutine")
		got, err := policy.GetEventLoop()
		require.NoError(t, err)
		require.Same(t, l, got, "policy.GetEventLoop inside the main coroutine is the running loop")
		_, err = kernel.CreateTask(l, func(co *kernel.Co) (struct{}, error) {
			defer func() { order = append(order, "left-over task cleaned up") }()
			return struct{}{}, co.Sleep(time.Hour)
		})
		require.NoError(t, err)
		gen, err := kernel.NewAsyncGen(l, func(co *kernel.Co, yield func(int) bool) error {
			defer func() { order = append(order, "generator finalised") }()
			for i := 0; yield(i); i++ {
			}
			return nil
		})
		require.NoError(t, err)
		if _, _, err := gen.Next(co); err != nil {
			return 0, err
		}
		if err := co.Yield(); err != nil { // let the task start
			return 0, err
		}
		return 42, nil
	}, loopkernel.WithSignals())
	require.NoError(t, err)
	require.Equal(t, 42, v)
	require.Equal(t, []string{"left-over task cleaned up", "generator finalised"}, order, "Run cancels tasks, then finalises generators")
	require.Nil(t, kernel.RunningLoop())
}

func TestRunParentContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := loopkernel.Run(ctx, func(co *kernel.Co) (struct{}, error) {
		return struct{}{}, co.Sleep(time.Hour)
	}, loopkernel.WithSignals())
	require.ErrorIs(t, err, context.DeadlineExceeded, "the cause is in the error")
	require.ErrorIs(t, err, kernel.ErrCancelled, "the main task was cancelled")
}

func TestRunMainError(t *testing.T) {
	boom := errors.New("boom")
	_, err := loopkernel.Run(context.Background(), func(co *kernel.Co) (int, error) { return 0, boom },
		loopkernel.WithSignals())
	require.ErrorIs(t, err, boom)
	require.NotErrorIs(t, err, kernel.ErrCancelled)
}

func TestRunRefusedInsideALoop(t *testing.T) {
	var inner error
	_, err := loopkernel.Run(context.Background(), func(co *kernel.Co) (struct{}, error) {
		_, inner = loopkernel.Run(context.Background(), func(co *kernel.Co) (struct{}, error) { return struct{}{}, nil })
		return struct{}{}, nil
	}, loopkernel.WithSignals())
	require.NoError(t, err)
	require.ErrorIs(t, inner, kernel.ErrRunning, "asyncio.run() cannot be called from a running event loop")
}

func TestRunUnknownPolicy(t *testing.T) {
	_, err := loopkernel.Run(context.Background(), func(co *kernel.Co) (struct{}, error) { return struct{}{}, nil },
		loopkernel.WithFlags(policy.Flags{Policy: "no-such-policy"}))
	require.ErrorIs(t, err, policy.ErrUnknownPolicy)
}

// A task that answers its shutdown cancellation with an error is reported
// to the exception handler, since nobody is left to read it (asyncio.run's
// "unhandled exception during asyncio.run() shutdown").
func TestRunReportsErrorsAtShutdown(t *testing.T) {
	var log strings.Builder
	logger := hclog.New(&hclog.LoggerOptions{Output: &log})
	_, err := loopkernel.Run(context.Background(), func(co *kernel.Co) (struct{}, error) {
		_, err := kernel.CreateTask(co.Loop(), func(co *kernel.Co) (struct{}, error) {
			if err := co.Sleep(time.Hour); err != nil {
				return struct{}{}, errors.New("clean-up failed")
			}
			return struct{}{}, nil
		})
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, co.Yield()
	}, loopkernel.WithSignals(), loopkernel.WithLoopOptions(kernel.WithLogger(logger)))
	require.NoError(t, err)
	require.Contains(t, log.String(), "unhandled exception during shutdown")
	require.Contains(t, log.String(), "clean-up failed")
}
