package plugin

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
)

// The test binary is its own plugin: TestMain registers test back-ends and
// ServeBundled serves one when Launch re-executes the binary. With
// envTestHost set it instead plays a host that launches a plugin and waits
// to be killed (TestHostKilled).
const envTestHost = "LOOPKERNEL_PLUGIN_TEST_HOST"

func TestMain(m *testing.M) {
	sdk.Register("testpoll", newTestPoll)
	sdk.Register("crashloop", func() (sdk.Selector, error) {
		s, err := newTestPoll()
		return &crashOnWait{s}, err
	})
	sdk.Register("hang", func() (sdk.Selector, error) {
		s, err := newTestPoll()
		return &hangOnWait{s}, err
	})
	sdk.Register("garbage", func() (sdk.Selector, error) {
		s, err := newTestPoll()
		return &garbageOnWait{s}, err
	})
	ServeBundled()
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
	sel, err := Launch(context.Background(), Spec{Name: "testpoll"})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	st, err := sel.Stats(context.Background())
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", st.Pid))
	dir := ""
	for _, kv := range strings.Split(string(env), "\x00") {
		if v, ok := strings.CutPrefix(kv, envSocketDir+"="); ok {
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

// testPoll is a minimal level-triggered poll(2) selector, enough to carry
// readiness through the whole out-of-process stack.
type testPoll struct {
	mu     sync.Mutex
	name   string // settable through Configure, to test Configurer
	regs   map[sdk.Token]testReg
	wake   [2]int
	closed bool
}

type testReg struct {
	fd       int
	interest sdk.Events
}

func newTestPoll() (sdk.Selector, error) {
	s := &testPoll{regs: map[sdk.Token]testReg{}}
	if err := unix.Pipe2(s.wake[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *testPoll) Register(fd int, tok sdk.Token, interest sdk.Events) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.regs[tok]; ok {
		return sdk.ErrExists
	}
	s.regs[tok] = testReg{fd, interest}
	return nil
}

func (s *testPoll) Modify(tok sdk.Token, interest sdk.Events) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.regs[tok]
	if !ok {
		return sdk.ErrNotRegistered
	}
	r.interest = interest
	s.regs[tok] = r
	return nil
}

func (s *testPoll) Unregister(tok sdk.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.regs[tok]; !ok {
		return sdk.ErrNotRegistered
	}
	delete(s.regs, tok)
	return nil
}

func (s *testPoll) Wait(events []sdk.Event, timeout time.Duration) (int, error) {
	s.mu.Lock()
	fds := []unix.PollFd{{Fd: int32(s.wake[0]), Events: unix.POLLIN}}
	toks := []sdk.Token{0}
	for tok, r := range s.regs {
		var ev int16
		if r.interest&sdk.Read != 0 {
			ev |= unix.POLLIN
		}
		if r.interest&sdk.Write != 0 {
			ev |= unix.POLLOUT
		}
		if ev != 0 {
			fds = append(fds, unix.PollFd{Fd: int32(r.fd), Events: ev})
			toks = append(toks, tok)
		}
	}
	s.mu.Unlock()
	ms := -1
	if timeout >= 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	if _, err := unix.Poll(fds, ms); err != nil && err != unix.EINTR {
		return 0, err
	}
	var buf [16]byte
	for fds[0].Revents != 0 {
		if n, _ := unix.Read(s.wake[0], buf[:]); n <= 0 {
			break
		}
	}
	n := 0
	for i := 1; i < len(fds) && n < len(events); i++ {
		var ev sdk.Events
		re := fds[i].Revents
		if re&unix.POLLIN != 0 {
			ev |= sdk.Read
		}
		if re&unix.POLLOUT != 0 {
			ev |= sdk.Write
		}
		if re&(unix.POLLERR|unix.POLLNVAL) != 0 {
			ev |= sdk.Error
		}
		if re&unix.POLLHUP != 0 {
			ev |= sdk.Hangup
		}
		if ev != 0 {
			events[n] = sdk.Event{Token: toks[i], Events: ev}
			n++
		}
	}
	return n, nil
}

func (s *testPoll) Wake() error {
	_, err := unix.Write(s.wake[1], []byte{1})
	if err == unix.EAGAIN {
		err = nil
	}
	return err
}

func (s *testPoll) Capabilities() sdk.Capabilities {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := "testpoll"
	if s.name != "" {
		name = s.name
	}
	return sdk.Capabilities{Name: name, RegularFiles: true}
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

func (s *testPoll) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return sdk.ErrClosed
	}
	s.closed = true
	unix.Close(s.wake[0])
	unix.Close(s.wake[1])
	return nil
}

// testLogger sends host and forwarded plugin logs to the test log.
func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
