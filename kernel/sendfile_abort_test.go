package kernel_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/internal/testkit"
	"github.com/loopkernel/loopkernel/kernel"
)

// silentClient never reads what arrives, so a large send fills the socket
// buffers and the sender has to wait.
type silentClient struct{ tr kernel.Transport }

func (p *silentClient) ConnectionMade(t kernel.BaseTransport) {
	p.tr = t.(kernel.Transport)
	p.tr.PauseReading()
}
func (p *silentClient) DataReceived([]byte)  {}
func (p *silentClient) EOFReceived() bool    { return false }
func (p *silentClient) ConnectionLost(error) {}

// serverSide keeps the server's transport for the test.
type serverSide struct{ tr kernel.Transport }

func (p *serverSide) ConnectionMade(t kernel.BaseTransport) { p.tr = t.(kernel.Transport) }
func (p *serverSide) DataReceived([]byte)                   {}
func (p *serverSide) EOFReceived() bool                     { return false }
func (p *serverSide) ConnectionLost(error)                  {}

// Aborting a transport while a zero-copy Sendfile over it waits for the
// socket to drain ends the Sendfile with an error, and the socket's
// descriptor is closed only once the Sendfile has let go of it: closed
// under it, the number is reused by the next accept, whose connection
// would then meet the stale registration and be closed at once.
func TestAbortDuringSendfileEndsItAndLeavesTheDescriptorAlone(t *testing.T) {
	l := testkit.NewLoop(t, "")
	f, err := os.CreateTemp(t.TempDir(), "big")
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Truncate(64<<20)) // far more than the socket buffers hold
	_, err = testkit.Run(t, l, func(co *kernel.Co) (struct{}, error) {
		srvProto := &serverSide{}
		srv, _, err := testkit.Connect(co, func() *serverSide { return srvProto }, &silentClient{})
		if err != nil {
			return struct{}{}, err
		}
		defer srv.Close()
		if err := testkit.Until(co, 5*time.Second, func() bool { return srvProto.tr != nil }); err != nil {
			return struct{}{}, err
		}
		sending, err := kernel.CreateTask(l, func(co *kernel.Co) (int64, error) {
			return kernel.Sendfile(co, srvProto.tr, f, 0, 0, false)
		})
		if err != nil {
			return struct{}{}, err
		}
		if err := co.Sleep(50 * time.Millisecond); err != nil { // the send fills the buffers and waits
			return struct{}{}, err
		}
		require.False(t, sending.Done(), "the Sendfile is waiting for a reader")
		srvProto.tr.Abort()
		if err := testkit.Until(co, 5*time.Second, sending.Done); err != nil {
			return struct{}{}, errors.New("an aborted transport's Sendfile never ended")
		}
		n, err := sending.Result()
		assert.Error(t, err, "an aborted Sendfile is an error")
		assert.Less(t, n, int64(64<<20))

		// New connections reuse descriptor numbers; each must work.
		for range 5 {
			_, tr, err := testkit.EchoPair(co, &recorder{})
			if err != nil {
				return struct{}{}, err
			}
			p := tr.GetProtocol().(*recorder)
			tr.Write([]byte("still fine"))
			if err := testkit.Until(co, 5*time.Second, func() bool { return string(p.got) == "still fine" }); err != nil {
				return struct{}{}, errors.New("a connection accepted after the abort does not work")
			}
			tr.Close()
		}
		return struct{}{}, nil
	})
	require.NoError(t, err)
}

type recorder struct{ got []byte }

func (p *recorder) ConnectionMade(kernel.BaseTransport) {}
func (p *recorder) DataReceived(b []byte)               { p.got = append(p.got, b...) }
func (p *recorder) EOFReceived() bool                   { return false }
func (p *recorder) ConnectionLost(error)                {}
