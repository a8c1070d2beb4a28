package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/dataplane"
)

// Environment variables between host and plugin. They are part of the
// plugin protocol, so a plugin written against another language's go-plugin
// port can honour them too.
const (
	// envDataPlaneFD holds the descriptor number of the plugin's end of the
	// data-plane socketpair (always 3: the first exec.Cmd.ExtraFiles slot).
	envDataPlaneFD = "LOOPKERNEL_DATAPLANE_FD"
	// envFamily names the family this process serves ("selector",
	// "resolver", "executor"), and so which data plane fd 3 speaks.
	envFamily = "LOOPKERNEL_PLUGIN_FAMILY"
	// envBundled names the bundled back-end (of the family in envFamily) a
	// re-executed host binary serves.
	envBundled = "LOOPKERNEL_BUNDLED_PLUGIN"
	// envLogLevel is the hclog level the plugin logs at (default info).
	envLogLevel = "LOOPKERNEL_PLUGIN_LOG_LEVEL"
	// envSocketDir is go-plugin's PLUGIN_UNIX_SOCKET_DIR: the private
	// directory for this plugin's gRPC socket.
	envSocketDir = "PLUGIN_UNIX_SOCKET_DIR"
	// envSocketDirToMake names the directory (mode 0700) the plugin makes
	// for its gRPC socket and uses as PLUGIN_UNIX_SOCKET_DIR: made by the
	// plugin once its signal handlers are in place, so that it is removed
	// however the host ends (go-plugin's own, made by the host before the
	// plugin exists, is left behind when the host dies first).
	envSocketDirToMake = "LOOPKERNEL_PLUGIN_SOCKET_DIR"
)

// Versions of the two planes. The control version is also go-plugin's
// ProtocolVersion, so an incompatible plugin is refused before any RPC.
// Control v2 added the family to the handshake; the data-plane version is
// the selector plane's (dataplane.Version) and the call plane's
// (dataplane.CallVersion), which are both 1.
const (
	controlVersion   = 2
	dataplaneVersion = 1
)

// handshake is checked by go-plugin before anything else: a binary started
// by hand (without the cookie) prints a friendly refusal and exits. It is
// the same for every family; the family is the key in go-plugin's plugin
// map, and the control Handshake confirms it.
var handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  controlVersion,
	MagicCookieKey:   "LOOPKERNEL_PLUGIN",
	MagicCookieValue: "d8b1c0c2-loopkernel-plugin",
}

// Configurer is implemented by a back-end (of any family) that accepts
// settings sent with the Configure control call (Spec.Config on the host).
// Settings the SDK handles itself ("log_level") never reach it; a back-end
// that does not implement Configurer rejects every other key.
type Configurer interface {
	Configure(key, value string) error
}

// Backends is what a plugin binary serves: one factory per family it
// offers, any of them nil. The host starts one process per back-end it
// uses, and tells each which family to serve; the factory for that family
// runs once in that process.
type Backends struct {
	// Name is the plugin's name: the host checks it is the plugin it meant
	// to start (a third-party plugin is conventionally the executable
	// loopkernel-plugin-NAME).
	Name     string
	Selector func() (sdk.Selector, error)
	Resolver func() (sdk.Resolver, error)
	Executor func() (sdk.Executor, error)
	// Proactor serves a completion back-end on the shared-memory plane
	// (sdk/proactorplane): the data-plane socket is the plane's control
	// socket.
	Proactor func() (sdk.Proactor, error)
}

// families lists the families b serves, in a fixed order.
func (b Backends) families() []string {
	var fs []string
	if b.Selector != nil {
		fs = append(fs, sdk.Selectors.Family())
	}
	if b.Resolver != nil {
		fs = append(fs, sdk.Resolvers.Family())
	}
	if b.Executor != nil {
		fs = append(fs, sdk.Executors.Family())
	}
	if b.Proactor != nil {
		fs = append(fs, sdk.Proactors.Family())
	}
	return fs
}

// Serve runs a plugin: it is what a plugin's main calls, and it does not
// return. It serves the back-end of the family the host asked for on the
// data plane the host passed in (the selector plane or the call plane,
// sdk/dataplane), answers control calls over go-plugin gRPC, and exits
// when the host asks it to shut down, closes the data plane, or dies.
// Logs go through hclog as JSON on stderr, which the host forwards to its
// own logger under the plugin's name.
func Serve(b Backends) {
	os.Exit(serve(b))
}

// ServeBundled serves the bundled back-end named in the environment when the
// process was started as a bundled plugin, and exits; otherwise it returns at
// once. Put it first in main (and in TestMain): the back-ends registered in
// sdk.Selectors, sdk.Resolvers, sdk.Executors and sdk.Proactors from init are what it can
// serve (init functions run before main).
func ServeBundled() {
	name, ok := os.LookupEnv(envBundled)
	if !ok {
		return
	}
	b, err := bundled(os.Getenv(envFamily), name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loopkernel: %v\n", err)
		os.Exit(2)
	}
	Serve(b)
}

// bundled finds the registered back-end name of family fam.
func bundled(fam, name string) (Backends, error) {
	b := Backends{Name: name}
	var ok bool
	switch fam {
	case sdk.Selectors.Family():
		b.Selector, ok = sdk.Selectors.Lookup(name)
	case sdk.Resolvers.Family():
		b.Resolver, ok = sdk.Resolvers.Lookup(name)
	case sdk.Executors.Family():
		b.Executor, ok = sdk.Executors.Lookup(name)
	case sdk.Proactors.Family():
		b.Proactor, ok = sdk.Proactors.Lookup(name)
	default:
		return b, fmt.Errorf("%s=%q is not a back-end family that runs out of process", envFamily, fam)
	}
	if !ok {
		return b, fmt.Errorf("no bundled %s %q", fam, name)
	}
	return b, nil
}

// serve is Serve without the exit, returning the exit status.
func serve(b Backends) int {
	// Parent death arrives as parentDeathSignal (PR_SET_PDEATHSIG); an
	// operator's SIGTERM or SIGHUP means the same: tidy up and go. This
	// comes first: until it is in place a SIGTERM kills the process without
	// cleanup (parentDeathSignal is ignored until then, and the closed data
	// plane tells the same news).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP, parentDeathSignal)
	// Once the host is gone, our stderr is a pipe nobody reads. Go kills a
	// program that writes to a broken pipe on fd 1 or 2 with SIGPIPE, which
	// would skip the cleanup; ignored, the write just fails with EPIPE.
	signal.Ignore(syscall.SIGPIPE)
	// A socket directory that outlives the plugin is litter in the
	// temporary directory; every way out below goes through here.
	if os.Getenv(handshake.MagicCookieKey) == handshake.MagicCookieValue {
		if dir := os.Getenv(envSocketDirToMake); dir != "" && os.Mkdir(dir, 0o700) == nil {
			os.Setenv(envSocketDir, dir)
		}
		if dir := os.Getenv(envSocketDir); dir != "" {
			defer removeSocketDir(dir)
		}
	}

	// go-plugin swaps os.Stderr for a pipe of its own once it is serving;
	// logs must keep going to the real stderr, which the host reads.
	stderr := os.Stderr
	logger := hclog.New(&hclog.LoggerOptions{
		Output:     stderr,
		JSONFormat: true,
		Level:      hclog.LevelFromString(os.Getenv(envLogLevel)),
	})
	if logger.GetLevel() == hclog.NoLevel {
		logger.SetLevel(hclog.Info)
	}
	if os.Getenv(handshake.MagicCookieKey) != handshake.MagicCookieValue {
		fmt.Fprintf(stderr, "%s is a loopkernel plugin; a loopkernel host starts it, not a person.\n", os.Args[0])
		return 1
	}

	fam := os.Getenv(envFamily)
	conn, err := dataPlaneFromEnv()
	if err != nil {
		logger.Error("no data plane", "error", err)
		return 1
	}
	be, err := newServed(b, fam, int(conn.Fd()))
	if err != nil {
		logger.Error("cannot create the back-end", "name", b.Name, "family", fam, "error", err)
		return 1
	}
	ctrl := newControlServer(b.Name, b.families(), be, logger)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dpDone := make(chan error, 1)
	go func() { dpDone <- be.serve(ctx, conn, logger) }()

	servedDone := make(chan struct{})
	go func() {
		defer close(servedDone)
		goplugin.Serve(&goplugin.ServeConfig{
			HandshakeConfig: handshake,
			Plugins:         pluginSet(ctrl, b.families()),
			GRPCServer:      goplugin.DefaultGRPCServer,
			Logger:          logger,
		})
	}()

	logger.Debug("plugin serving", "name", b.Name, "family", fam, "pid", os.Getpid())
	status := 0
	var deadline time.Time
	select {
	case err := <-dpDone:
		// The host closed its end (it exited, or it gave up on us) or sent
		// something we cannot parse; either way nobody is listening any more.
		ctrl.setDataPlaneErr(err)
		if err != nil && !errors.Is(err, dataplane.ErrPeerGone) && !errors.Is(err, context.Canceled) {
			logger.Error("data plane failed", "error", err)
			status = 1
		}
		dpDone = nil
	case sig := <-sigs:
		logger.Info("terminating on signal", "signal", sig.String())
	case deadline = <-ctrl.shutdown:
		logger.Debug("shutdown requested", "deadline", deadline)
	case <-servedDone:
		// go-plugin's own controller shutdown (the host's client.Kill).
	}

	// Stop the data plane, then close the back-end. A back-end that hangs
	// in Close must not keep the process alive past the host's deadline.
	if deadline.IsZero() {
		deadline = time.Now().Add(time.Second)
	}
	cancel()
	if dpDone != nil {
		select {
		case err := <-dpDone:
			ctrl.setDataPlaneErr(err)
		case <-time.After(time.Until(deadline)):
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- be.close() }()
	select {
	case err := <-closed:
		if err != nil && !errors.Is(err, sdk.ErrSelectorClosed) && !errors.Is(err, sdk.ErrExecutorClosed) {
			logger.Warn("closing the back-end", "error", err)
		}
	case <-time.After(time.Until(deadline)):
		logger.Warn("the back-end did not close before the shutdown deadline")
		status = 1
	}
	close(ctrl.stopped)

	// No graceful gRPC stop: go-plugin's long-lived streams would hold it
	// up, and the host does not need the Shutdown reply; it waits for the
	// process to exit.
	return status
}

// removeSocketDir removes the sockets in dir, then dir if that left it
// empty. Nothing recursive: the directory is named by the environment, and
// a mistaken environment must not cost anyone their files.
//
// A plugin exiting while go-plugin's Serve (on another goroutine) is still
// starting may see the socket appear just as it removes the directory; a
// few retries close that window.
func removeSocketDir(dir string) {
	if dir == "" {
		return
	}
	for try := 0; ; try++ {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Type()&os.ModeSocket != 0 {
				_ = os.Remove(filepath.Join(dir, e.Name()))
			}
		}
		err := os.Remove(dir)
		if err == nil || os.IsNotExist(err) || !errors.Is(err, syscall.ENOTEMPTY) || try == 3 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dataPlaneFromEnv adopts the descriptor the host passed and hides it from
// anything this plugin might itself execute.
func dataPlaneFromEnv() (*os.File, error) {
	s := os.Getenv(envDataPlaneFD)
	if s == "" {
		return nil, fmt.Errorf("%s is not set: the host did not pass a data-plane socket", envDataPlaneFD)
	}
	fd, err := strconv.Atoi(s)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q is not a descriptor number", envDataPlaneFD, s)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("data-plane descriptor %d: %w", fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("data-plane descriptor %d is not a socket", fd)
	}
	unix.CloseOnExec(fd)
	for _, k := range []string{envDataPlaneFD, envBundled, envFamily} {
		_ = os.Unsetenv(k)
	}
	return os.NewFile(uintptr(fd), "dataplane"), nil
}
