package executor_test

import (
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// The floor under a pool's round trip: two processes that pass a 16-byte
// packet back and forth on a SOCK_SEQPACKET socketpair with blocking
// reads and writes, and do nothing else. A round trip is one wake-up of
// each process, which is all the pool's round trip must cost too; what the
// pool adds on top is its envelope, JSON, the Go scheduler and (through a
// loop) epoll.

// floorPeerEnv makes the test binary the floor's peer (see TestMain).
const floorPeerEnv = "LOOPKERNEL_EXECUTOR_TEST_FLOOR_PEER"

// floorPeer answers every packet on descriptor 3 until the other end
// closes it.
func floorPeer() {
	b := make([]byte, 64)
	for {
		n, _, err := unix.Recvfrom(3, b, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			os.Exit(0)
		}
		if _, err := unix.Write(3, b[:n]); err != nil {
			os.Exit(0)
		}
	}
}

func BenchmarkSeqpacketFloor(b *testing.B) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	peer := os.NewFile(uintptr(fds[1]), "floor-peer")
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), floorPeerEnv+"=1")
	cmd.ExtraFiles = []*os.File{peer}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	peer.Close()
	defer cmd.Wait()
	defer unix.Close(fds[0])
	c0, w0 := cpuNow(), wakeups()
	msg := make([]byte, 16)
	in := make([]byte, 64)
	for b.Loop() {
		if _, err := unix.Write(fds[0], msg); err != nil {
			b.Fatal(err)
		}
		for {
			_, _, err := unix.Recvfrom(fds[0], in, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				b.Fatal(err)
			}
			break
		}
	}
	b.StopTimer()
	unix.Close(fds[0])
	cmd.Wait()
	b.ReportMetric(float64((cpuNow()-c0).Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(wakeups()-w0)/float64(b.N), "sleeps/op")
}
