package conformance

import (
	"bytes"
	"syscall"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/streams"
)

// The high-level layer (streams.Process, asyncio.subprocess) from tasks.
var processStreamCases = []ncase{
	{name: "process/streams/communicate-both-10MiB", run: pCommunicate},
	{name: "process/streams/dialogue", run: pDialogue},
	{name: "process/streams/signals", run: pStreamSignals},
}

// pCommunicate: 10 MiB in, 10 MiB out on stdout and on stderr at once; a
// Communicate that wrote all input before reading would deadlock.
func pCommunicate(n *nt) {
	n.needTool("tee")
	l := n.newLoop()
	n.run(l, "communicate", func(co *kernel.Co) error {
		const size = 10 << 20
		input := bytes.Repeat(pattern(1<<20), size>>20)
		p, err := streams.CreateSubprocessExec(co, "tee", []string{"/dev/stderr"}, nil)
		if err != nil {
			return err
		}
		out, errOut, err := p.Communicate(co, input)
		require.NoError(n, err, "rule: Communicate with large output on both pipes completes")
		assert.Equal(n, size, len(out), "rule: all of stdout is returned")
		assert.Equal(n, size, len(errOut), "rule: all of stderr is returned")
		assert.True(n, bytes.Equal(input, out) && bytes.Equal(input, errOut), "rule: both streams arrive intact")
		rc, ok := p.Returncode()
		assert.True(n, ok && rc == 0, "rule: Communicate returns after the exit (rc %d, %v)", rc, ok)
		return nil
	})
}

// pDialogue: a line to stdin, a line back from stdout, then the exit code.
func pDialogue(n *nt) {
	n.needTool("sh")
	l := n.newLoop()
	n.run(l, "dialogue", func(co *kernel.Co) error {
		p, err := streams.CreateSubprocessShell(co, `read x; echo "got $x"; echo oops >&2; exit 3`, nil)
		if err != nil {
			return err
		}
		require.NotNil(n, p.Stdin)
		require.NoError(n, p.Stdin.Write([]byte("hi\n")))
		require.NoError(n, p.Stdin.Drain(co))
		line, err := p.Stdout.Readline(co)
		require.NoError(n, err)
		assert.Equal(n, "got hi\n", string(line), "rule: the child's answer arrives on Stdout")
		errLine, err := p.Stderr.Readline(co)
		require.NoError(n, err)
		assert.Equal(n, "oops\n", string(errLine), "rule: and its complaint on Stderr")
		rc, err := p.Wait(co)
		require.NoError(n, err)
		assert.Equal(n, 3, rc, "rule: Wait returns the exit status")
		rest, err := p.Stdout.Read(co, -1)
		require.NoError(n, err)
		assert.Empty(n, rest, "rule: Stdout ends at EOF")
		return nil
	})
}

// pStreamSignals: Terminate ends a child with -SIGTERM; a signal after the
// exit is refused.
func pStreamSignals(n *nt) {
	n.needTool("sleep")
	l := n.newLoop()
	n.run(l, "process signals", func(co *kernel.Co) error {
		p, err := streams.CreateSubprocessExec(co, "sleep", []string{"30"}, &streams.ProcessOptions{SubprocessOptions: kernel.SubprocessOptions{Stdin: kernel.StdioDevNull}})
		if err != nil {
			return err
		}
		assert.Nil(n, p.Stdin, "rule: no Writer for a stdin that is not a pipe")
		require.NoError(n, p.Terminate())
		rc, err := p.Wait(co)
		require.NoError(n, err)
		assert.Equal(n, -int(syscall.SIGTERM), rc)
		assert.ErrorIs(n, p.Kill(), kernel.ErrProcessLookup, "rule: a signal after the exit is refused")
		return nil
	})
}
