package plugin_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	_ "github.com/loopkernel/loopkernel/plugins/proactor" // the bundled io_uring proactor, "uring"
	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
	"github.com/loopkernel/loopkernel/sdk/proactorplane"
)

// A plugin author's whole main: an sdk.Selector implementation and one
// Serve call (examples/selector-plugin is a complete one in one file).
func ExampleServe() {
	plugin.Serve(plugin.Backends{Name: "my-poll", Selector: selector.NewPoll})
}

// Launch runs a back-end in a process of its own: a bundled one by
// re-executing this binary, whose main (here TestMain) calls ServeBundled
// first. The result is a supervised sdk.Selector.
func ExampleLaunch() {
	sel, err := plugin.Launch(context.Background(), sdk.Selectors, plugin.Spec{Name: "testpoll"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sel.Close()
	st, err := sel.(*plugin.RemoteSelector).Stats(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sel.Capabilities().Name, st.Pid != os.Getpid(), st.Restarts)
	// Output: testpoll true 0
}

// Resolve turns a selector spec into a factory: "NAME" in process,
// "plugin:NAME" or "plugin:/path" out of process.
func ExampleResolve() {
	for _, spec := range []string{"testpoll", "plugin:testpoll"} {
		f, err := plugin.Resolve(sdk.Selectors, spec, plugin.Options{})
		if err != nil {
			fmt.Println(err)
			return
		}
		sel, err := f()
		if err != nil {
			fmt.Println(err)
			return
		}
		_, outOfProcess := sel.(*plugin.RemoteSelector)
		fmt.Println(spec, sel.Capabilities().Name, outOfProcess)
		sel.Close()
	}
	_, err := plugin.Resolve(sdk.Selectors, "no-such-backend", plugin.Options{})
	fmt.Println(err != nil)
	// Output:
	// testpoll testpoll false
	// plugin:testpoll testpoll true
	// true
}

// greet is registered in every process of this program (host and workers
// alike, since a worker is this program re-executed), so an executor
// plugin can run it by name.
var greet = sdk.NewFunc("example.greet", func(_ context.Context, name string) (string, error) {
	return "hello, " + name, nil
})

// One binary may serve back-ends of several families: the host starts a
// process per back-end it uses and tells each which family to serve.
func ExampleBackends() {
	plugin.Serve(plugin.Backends{
		Name:     "my-backends",
		Selector: selector.NewPoll,
		Resolver: func() (sdk.Resolver, error) { return myResolver{}, nil },
	})
}

// myResolver stands in for a third-party resolver in ExampleBackends.
type myResolver struct{ sdk.Resolver }

// ServeBundled comes first in main: when this binary was re-executed to
// serve one of its own registered back-ends, it serves it and exits.
func ExampleServeBundled() {
	plugin.ServeBundled()
	// ... the program's real main follows.
}

// An executor in a process of its own: the function runs in the worker,
// and its errors come back as the in-process executor's would.
func ExampleLaunch_executor() {
	ex, err := plugin.Launch(context.Background(), sdk.Executors, plugin.Spec{Name: "funcs"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ex.Close()
	s, err := greet.Call(context.Background(), ex, "worker")
	fmt.Println(s, err)
	_, err = ex.Call(context.Background(), "no.such.func", nil)
	fmt.Println(errors.Is(err, sdk.ErrUnknownFunc))
	// Output:
	// hello, worker <nil>
	// true
}

// A resolver in a process of its own ("table" is a test back-end that
// knows db.test).
func ExampleLaunch_resolver() {
	r, err := plugin.Launch(context.Background(), sdk.Resolvers, plugin.Spec{Name: "table"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.(*plugin.RemoteResolver).Close()
	ais, err := r.Getaddrinfo(context.Background(), "db.test", "5432", sdk.AddrinfoHints{})
	fmt.Println(len(ais), ais[0].Addr, err)
	// Output: 2 127.0.0.1:5432 <nil>
}

// Open takes the same spec strings for every family.
func ExampleOpen() {
	ex, err := plugin.Open(context.Background(), sdk.Executors, "plugin:funcs", plugin.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ex.Close()
	_, remote := ex.(*plugin.RemoteExecutor)
	fmt.Println(remote)
	// Output: true
}

// When a worker dies, the calls it was running fail with an error wrapping
// sdk.ErrBackendDied that says so; the next call goes to a new worker.
func ExampleRemoteExecutor() {
	b, err := plugin.Launch(context.Background(), sdk.Executors, plugin.Spec{Name: "funcs"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ex := b.(*plugin.RemoteExecutor)
	defer ex.Close()
	failed := make(chan error, 1)
	go func() {
		_, err := ex.Call(context.Background(), "plugintest.block", []byte("{}"))
		failed <- err
	}()
	for {
		st, _ := ex.Stats(context.Background())
		if st.InFlight == 1 {
			syscall.Kill(st.Pid, syscall.SIGKILL)
			break
		}
		time.Sleep(time.Millisecond)
	}
	err = <-failed
	fmt.Println(errors.Is(err, sdk.ErrBackendDied), strings.Contains(err.Error(), "signal: killed"))
	s, err := greet.Call(context.Background(), ex, "again")
	fmt.Println(s, err)
	// Output:
	// true true
	// hello, again <nil>
}

// Died is for a caller that talks to the worker over a channel of its own
// (the process pool's) and sees the worker end there: it says how the
// process ended, wrapping sdk.ErrBackendDied, as a call on the call plane
// would have.
func ExampleRemoteExecutor_Died() {
	b, err := plugin.Launch(context.Background(), sdk.Executors, plugin.Spec{Name: "funcs"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ex := b.(*plugin.RemoteExecutor)
	defer ex.Close()
	st, err := ex.Stats(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	syscall.Kill(st.Pid, syscall.SIGKILL)
	err = ex.Died()
	fmt.Println(errors.Is(err, sdk.ErrBackendDied), strings.Contains(err.Error(), "signal: killed"))
	// Output: true true
}

// The io_uring proactor out of process: the plugin owns its ring, the
// host hands the returned *RemoteProactor (an sdk.Proactor) to the
// completion driver, and operations travel on the shared-memory plane
// (sdk/proactorplane), never over gRPC. A plugin that dies fails what was
// in flight with DiedError and is restarted.
func ExampleLaunch_proactor() {
	pr, err := plugin.Launch(context.Background(), sdk.Proactors, plugin.Spec{Name: "uring"})
	if err != nil {
		fmt.Println(err) // where io_uring is refused, the plugin says so
		return
	}
	defer pr.Close()
	rp := pr.(*plugin.RemoteProactor)
	st, err := rp.Stats(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(pr.Capabilities().Name, st.Pid != os.Getpid(), errors.Is(rp.DiedError(), sdk.ErrBackendDied))
	// Output: uring true true
}

// When the proactor plugin dies, the operations in flight in it complete
// with proactorplane.DiedErrno (the completion driver reports DiedError
// for them, which names the plugin and how it died), and the next Complete
// has a new plugin serving.
func ExampleRemoteProactor() {
	pr, err := plugin.Launch(context.Background(), sdk.Proactors, plugin.Spec{Name: "uring"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pr.Close()
	rp := pr.(*plugin.RemoteProactor)
	fds, _ := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	// A poll that never completes (nothing is written), and a read that
	// is in flight in the plugin when it dies.
	bufs := make([][]byte, proactorplane.BufCount)
	for i := range bufs {
		bufs[i] = make([]byte, proactorplane.BufSize)
	}
	_ = rp.ProvideBuffers(1, bufs)
	_ = rp.Submit([]sdk.Submission{{Op: sdk.OpRead, FD: int32(fds[0]), Group: 1, UserData: 7}})
	var done [8]sdk.Completion
	rp.Complete(done[:], 0) // the plugin has the read
	st, _ := rp.Stats(context.Background())
	syscall.Kill(st.Pid, syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n, err := rp.Complete(done[:], 100*time.Millisecond)
		if err != nil {
			fmt.Println(err)
			return
		}
		if n > 0 && done[0].UserData == 7 {
			fmt.Println(syscall.Errno(-done[0].Res) == proactorplane.DiedErrno)
			break
		}
	}
	died := rp.DiedError()
	// The replacement starts in the background; Complete adopts it.
	var st2 plugin.Stats
	for time.Now().Before(deadline) {
		rp.Complete(done[:], 10*time.Millisecond)
		if st2, err = rp.Stats(context.Background()); err == nil && st2.Pid != st.Pid {
			break
		}
	}
	fmt.Println(errors.Is(died, sdk.ErrBackendDied), strings.Contains(died.Error(), "signal: killed"), st2.Restarts, st2.Pid != st.Pid)
	// Output:
	// true
	// true true 1 true
}
