package echobench

import (
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// startEchoServer serves echoes over net, passing every chunk read through
// transform (given the count of bytes echoed on the connection before it)
// and writing what it returns in pieces of at most 7 bytes, so the client
// sees short reads. It stops with the test.
func startEchoServer(t *testing.T, transform func(total int, b []byte) []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				go func() { <-t.Context().Done(); c.Close() }()
				buf := make([]byte, 4096)
				total := 0
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					out := transform(total, buf[:n])
					total += n
					for len(out) > 0 {
						k := min(len(out), 7)
						if _, err := c.Write(out[:k]); err != nil {
							return
						}
						out = out[k:]
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// Echoes that arrive in 7-byte pieces are reassembled: the load completes
// requests and takes many reads per batch.
func TestEpollLoadReassemblesShortReads(t *testing.T) {
	addr := startEchoServer(t, func(_ int, b []byte) []byte { return b })
	res, err := Load(context.Background(), LoadConfig{
		Addr: addr, Engine: EngineEpoll, Conns: 3, Size: 1000, Pipeline: 3,
		Warmup: 10 * time.Millisecond, Duration: 150 * time.Millisecond,
	}, nil)
	require.NoError(t, err)
	require.Positive(t, res.Requests)
	// How many pieces one read gathers depends on scheduling; more than
	// one read per batch is certain.
	require.Greater(t, res.Client.Reads, res.Requests/3, "7-byte echoes of 3000-byte batches take several reads")
}

// A batch bigger than the socket buffers, to a server with a small receive
// buffer, cannot be written in one write: the rest goes out on EPOLLOUT,
// and every byte still comes back in order.
func TestEpollLoadFinishesShortWrites(t *testing.T) {
	// The buffer is set on the listener, so that accepted sockets
	// advertise a small window from their first segment.
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 64<<10) })
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	res, err := Load(context.Background(), LoadConfig{
		Addr: ln.Addr().String(), Engine: EngineEpoll, Conns: 2, Size: 2 << 20, Pipeline: 3,
		Warmup: 0, Duration: 2 * time.Second,
	}, nil)
	require.NoError(t, err)
	require.Positive(t, res.Requests)
	// The socket's send buffer grows to 4 MiB at most (tcp_wmem).
	require.Greater(t, res.Client.Writes, res.Requests/3, "a 6 MiB batch takes more than one write")
}

// The load ends by itself at the end of its window even when the server
// never answers, and at once when the server hangs up or the context is
// cancelled.
func TestEpollLoadStopsWithinItsBounds(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { silent.Close() })
	var held []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	cfg := LoadConfig{Addr: silent.Addr().String(), Engine: EngineEpoll, Conns: 2, Size: 64, Pipeline: 1,
		Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond}

	t.Run("silent server", func(t *testing.T) {
		start := time.Now()
		_, err := Load(context.Background(), cfg, nil)
		require.ErrorIs(t, err, ErrIncomplete)
		took := time.Since(start)
		require.GreaterOrEqual(t, took, 250*time.Millisecond+drainGrace, "the window and the grace period run out first")
		require.Less(t, took, 250*time.Millisecond+drainGrace+time.Second)
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		long := cfg
		long.Duration = time.Hour
		start := time.Now()
		_, err := Load(ctx, long, nil)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Less(t, time.Since(start), maxWaitSlice+200*time.Millisecond)
	})
	t.Run("server hangs up", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { // echo one message, then hang up
					buf := make([]byte, 64)
					n, _ := io.ReadFull(c, buf)
					c.Write(buf[:n])
					c.Close()
				}()
			}
		}()
		hangup := cfg
		hangup.Addr = ln.Addr().String()
		hangup.Duration = time.Hour
		start := time.Now()
		_, err = Load(context.Background(), hangup, nil)
		require.Error(t, err)
		require.Less(t, time.Since(start), time.Second)
	})
	t.Run("nobody listening", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		ln.Close()
		refused := cfg
		refused.Addr = addr
		_, err = Load(context.Background(), refused, nil)
		require.ErrorIs(t, err, unix.ECONNREFUSED)
	})
}

// With PinClient the epoll engine runs on the client CPU alone — seen
// from the window callback, which runs on its thread — and leaves no
// thread of this process pinned afterwards.
func TestEpollLoadPinsItsThreadOnly(t *testing.T) {
	_, clientCPU, ok := cpuPair()
	if !ok {
		t.Skip("pinning needs two CPUs")
	}
	var before unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &before))
	addr := serveInBackground(t, ServeGoNet)
	var during unix.CPUSet
	_, err := Load(context.Background(), LoadConfig{
		Addr: addr, Engine: EngineEpoll, Conns: 2, Size: 64, Pipeline: 1,
		Warmup: 10 * time.Millisecond, Duration: 50 * time.Millisecond, PinClient: true, ClientCPU: clientCPU,
	}, func(open bool) {
		if open {
			unix.SchedGetaffinity(0, &during)
		}
	})
	require.NoError(t, err)
	require.Equal(t, 1, during.Count())
	require.True(t, during.IsSet(clientCPU))
	for _, tid := range threads(t, os.Getpid()) {
		var set unix.CPUSet
		if unix.SchedGetaffinity(tid, &set) == nil {
			require.Equal(t, before, set, "thread %d keeps a pinned mask", tid)
		}
	}
}

// A server started on a CPU runs there from its first instruction, and
// pinTree reaches every thread of a server and of its children.
func TestPinnedServers(t *testing.T) {
	serverCPU, _, ok := cpuPair()
	if !ok {
		t.Skip("pinning needs two CPUs")
	}
	s, err := start(context.Background(), ServerSpec{Name: "sh", Argv: []string{"/bin/sh", "-c", "sleep 30 >/dev/null & echo LISTENING x; wait"}}, -1)
	require.NoError(t, err)
	defer s.stop()
	pid := s.cmd.Process.Pid
	require.Eventually(t, func() bool { return len(children(pid)) == 1 }, 5*time.Second, 10*time.Millisecond)
	defer unix.Kill(children(pid)[0], unix.SIGKILL)
	require.NoError(t, pinTree(pid, serverCPU))
	check := func(pid int) {
		for _, tid := range threads(t, pid) {
			var set unix.CPUSet
			require.NoError(t, unix.SchedGetaffinity(tid, &set))
			require.Equal(t, 1, set.Count(), "process %d thread %d", pid, tid)
			require.True(t, set.IsSet(serverCPU))
		}
	}
	for _, p := range append([]int{pid}, children(pid)...) {
		check(p)
	}

	var before unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &before))
	s2, err := start(context.Background(), ServerSpec{Name: "sh", Argv: []string{"/bin/sh", "-c", "echo LISTENING x; exec sleep 30"}}, serverCPU)
	require.NoError(t, err)
	defer s2.stop()
	check(s2.cmd.Process.Pid)
	var after unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &after))
	require.Equal(t, before, after, "starting a pinned server leaves this thread's mask alone")
}

func threads(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	require.NoError(t, err)
	var tids []int
	for _, e := range entries {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids
}
