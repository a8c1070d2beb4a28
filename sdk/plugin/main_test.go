package plugin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// The test binary is its own plugin: TestMain registers test back-ends and
// ServeBundled serves one when Launch re-executes the binary. With
// envTestHost set it instead plays a host that launches a plugin and waits
// to be killed (TestHostKilled).
const envTestHost = "LOOPKERNEL_PLUGIN_TEST_HOST"

func TestMain(m *testing.M) {
	sdk.Selectors.Register("testpoll", newTestPoll)
	sdk.Selectors.Register("crashloop", func() (sdk.Selector, error) {
		s, err := newTestPoll()
		return &crashOnWait{s}, err
	})
	sdk.Selectors.Register("hang", func() (sdk.Selector, error) {
		s, err := newTestPoll()
		return &hangOnWait{s}, err
	})
	sdk.Selectors.Register("garbage", func() (sdk.Selector, error) {
		s, err := newTestPoll()
		return &garbageOnWait{s}, err
	})
	sdk.Resolvers.Register("table", func() (sdk.Resolver, error) { return tableResolver{}, nil })
	sdk.Executors.Register("funcs", func() (sdk.Executor, error) { return &funcExecutor{}, nil })
	ServeBundled()
	if os.Getenv(envStartProbe) != "" {
		os.Exit(startProbe())
	}
	if os.Getenv(envTestHost) != "" {
		os.Exit(playHost())
	}
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	os.Exit(code)
}

// cleanups run after all tests (built plugin executables).
var cleanups []func()

// playHost launches a bundled plugin, prints its pid and socket directory,
// and waits on stdin; the test SIGKILLs it.
func playHost() int {
	sel, err := Launch(context.Background(), sdk.Selectors, Spec{Name: "testpoll"})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	st, err := sel.(*RemoteSelector).Stats(context.Background())
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", st.Pid))
	dir := ""
	for _, kv := range strings.Split(string(env), "\x00") {
		if v, ok := strings.CutPrefix(kv, envSocketDirToMake+"="); ok {
			dir = v
		}
	}
	fmt.Printf("pid=%d dir=%s\n", st.Pid, dir)
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	return 0
}

// crashOnWait dies the moment it is asked to wait.
type crashOnWait struct{ sdk.Selector }

func (c *crashOnWait) Wait([]sdk.Event, time.Duration) (int, error) { os.Exit(3); return 0, nil }

// garbageOnWait answers a wait with a frame no data-plane peer could parse,
// written straight to the data-plane socket (descriptor 3 in a plugin).
type garbageOnWait struct{ sdk.Selector }

func (g *garbageOnWait) Wait([]sdk.Event, time.Duration) (int, error) {
	_, _ = unix.Write(3, []byte("this is not a frame"))
	select {}
}

// hangOnWait never answers.
type hangOnWait struct{ sdk.Selector }

func (h *hangOnWait) Wait([]sdk.Event, time.Duration) (int, error) { select {} }

// testPoll is the bundled poll selector under a test name ("testpoll"),
// with a Configure method so the tests exercise Configurer: the tests need a
// back-end of their own registration, not another poll implementation.
type testPoll struct {
	sdk.Selector
	mu   sync.Mutex
	name string // settable through Configure
}

func newTestPoll() (sdk.Selector, error) {
	inner, err := selector.NewPoll()
	if err != nil {
		return nil, err
	}
	return &testPoll{Selector: inner, name: "testpoll"}, nil
}

func (s *testPoll) Capabilities() sdk.Capabilities {
	c := s.Selector.Capabilities()
	s.mu.Lock()
	defer s.mu.Unlock()
	c.Name = s.name
	return c
}

func (s *testPoll) Configure(key, value string) error {
	if key != "name" || value == "" {
		return fmt.Errorf("want name=NONEMPTY")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.name = value
	return nil
}

// tableResolver answers from a fixed table: db.test is two loopback
// addresses, slow.test waits until its lookup is cancelled, anything else
// does not exist.
type tableResolver struct{}

func (tableResolver) Getaddrinfo(ctx context.Context, host, port string, _ sdk.AddrinfoHints) ([]sdk.Addrinfo, error) {
	switch host {
	case "db.test":
		return []sdk.Addrinfo{
			{Family: unix.AF_INET, SockType: unix.SOCK_STREAM, Protocol: unix.IPPROTO_TCP, CanonName: "db.test", Addr: netip.MustParseAddrPort("127.0.0.1:5432")},
			{Family: unix.AF_INET6, SockType: unix.SOCK_STREAM, Protocol: unix.IPPROTO_TCP, Addr: netip.MustParseAddrPort("[::1]:5432")},
		}, nil
	case "slow.test":
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (tableResolver) Getnameinfo(_ context.Context, a netip.AddrPort, _ int) (sdk.NameInfo, error) {
	if a.Addr() == netip.MustParseAddr("127.0.0.1") {
		return sdk.NameInfo{Host: "db.test", Service: fmt.Sprint(a.Port())}, nil
	}
	return sdk.NameInfo{}, &net.DNSError{Err: "no such host", Name: a.Addr().String(), IsNotFound: true}
}

// funcExecutor runs registered functions in this process, as an executor
// back-end does in a worker.
type funcExecutor struct{ closed atomic.Bool }

func (e *funcExecutor) Call(ctx context.Context, fn string, arg []byte) ([]byte, error) {
	if e.closed.Load() {
		return nil, sdk.ErrExecutorClosed
	}
	return sdk.RunFunc(ctx, fn, arg)
}

func (e *funcExecutor) Close() error { e.closed.Store(true); return nil }

// Functions the executor tests call; registered in every process of the
// test binary, host and workers alike.
var (
	upper = sdk.NewFunc("plugintest.upper", func(_ context.Context, s string) (string, error) {
		return strings.ToUpper(s), nil
	})
	fail = sdk.NewFunc("plugintest.fail", func(_ context.Context, why string) (int, error) {
		return 0, errors.New(why)
	})
	// block runs until it is told to stop: its call is cancelled.
	block = sdk.NewFunc("plugintest.block", func(ctx context.Context, _ struct{}) (struct{}, error) {
		<-ctx.Done()
		return struct{}{}, ctx.Err()
	})
	pid = sdk.NewFunc("plugintest.pid", func(context.Context, struct{}) (int, error) { return os.Getpid(), nil })
)

// testLogger sends host and forwarded plugin logs to the test log.
func testLogger(t testing.TB) hclog.Logger { return testkit.Logger(t, t.Name(), hclog.Debug) }
