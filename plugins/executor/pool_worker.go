package executor

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopkernel/loopkernel/sdk"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

// worker is one worker process of a pool, host side: its supervised plugin
// (whose supervisor never restarts it: the pool replaces it instead, so
// that one place decides), and the two memfds large arguments and results
// travel through. Only the call that holds w (taken from Pool.idle) touches
// it, so it needs no lock.
type worker struct {
	rx       *plugin.RemoteExecutor
	pid      int
	ch       *channel // the worker channel; nil until set up
	arg, res *os.File // memfds; the worker opens them by /proc path
	msg      []byte   // the call being sent, kept between calls
	tasks    int
	stopOnce sync.Once
	procOnce sync.Once
	// held: a started call (pool_start.go) has the worker, and its caller
	// watches the channel; under the pool's mu.
	held    bool
	started startedCall // the started call, when held
	// argHigh and resHigh are how much of each memfd the last call used,
	// to release what goes past retainShm.
	argHigh, resHigh int64
}

// launch starts one worker and adds it to the pool's set.
func (p *Pool) launch(ctx context.Context) (*worker, error) {
	ex, err := plugin.Launch(ctx, sdk.Executors, p.opts.Worker)
	if err != nil {
		return nil, err
	}
	rx := ex.(*plugin.RemoteExecutor)
	w := &worker{rx: rx}
	fail := func(err error) (*worker, error) {
		w.stop()
		return nil, err
	}
	if w.arg, err = memfd("loopkernel-pool-arg"); err != nil {
		return fail(err)
	}
	if w.res, err = memfd("loopkernel-pool-result"); err != nil {
		return fail(err)
	}
	st, err := rx.Stats(ctx)
	if err != nil {
		return fail(fmt.Errorf("asking the worker its pid: %w", err))
	}
	w.pid = st.Pid
	l, err := listenChannel()
	if err != nil {
		return fail(err)
	}
	defer l.close()
	if _, err := rx.Call(ctx, setupFuncName, []byte(strconv.Itoa(max(p.opts.WorkerProcs, 0))+" "+l.name)); err != nil {
		return fail(fmt.Errorf("setting worker %d up: %w", w.pid, err))
	}
	fd, err := l.accept(w.pid)
	if err != nil {
		return fail(err)
	}
	cancel, err := newEventfd()
	if err != nil {
		unix.Close(fd)
		return fail(err)
	}
	w.ch = newChannel(fd, cancel, p.closing)
	if lim := p.opts.MemoryLimit; lim > 0 {
		rl := unix.Rlimit{Cur: uint64(lim), Max: uint64(lim)}
		if err := unix.Prlimit(w.pid, unix.RLIMIT_DATA, &rl, nil); err != nil {
			return fail(fmt.Errorf("setting worker %d's memory limit: %w", w.pid, err))
		}
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return fail(fmt.Errorf("process pool: %w", sdk.ErrExecutorClosed))
	}
	p.workers[w] = struct{}{}
	p.mu.Unlock()
	return w, nil
}

// stopProcess stops the worker's process (through its supervisor), leaving
// its channel open: Close's way with a worker whose started call holds the
// channel.
func (w *worker) stopProcess() {
	w.procOnce.Do(func() {
		if w.rx != nil {
			_ = w.rx.Close()
		}
	})
}

func memfd(name string) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("process pool: memfd_create: %w", err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// stop stops the worker's process and releases its channel and shared
// memory. Only the holder of w calls it (a replacement, or Close once no
// call is in flight), so no one is waiting on the channel.
func (w *worker) stop() {
	w.stopOnce.Do(func() {
		w.stopProcess()
		if w.ch != nil {
			w.ch.close()
		}
		for _, f := range []*os.File{w.arg, w.res} {
			if f != nil {
				_ = f.Close()
			}
		}
	})
}

// replace stops w and starts a worker in its place, off the caller's
// goroutine. A slot whose starts keep failing is given up; when the last
// one goes, the pool is broken and every call fails with the reason.
func (p *Pool) replace(w *worker) {
	p.mu.Lock()
	delete(p.workers, w) // from here on w is this function's to stop
	p.mu.Unlock()
	if !p.background(func() { p.replaceNow(w) }) {
		w.stop() // the pool closed: no replacement
	}
}

func (p *Pool) replaceNow(w *worker) {
	w.stop()
	var err error
	backoff := 10 * time.Millisecond
	for range maxLaunchFailures {
		if p.life.Err() != nil {
			return
		}
		ctx, cancel := context.WithTimeout(p.life, p.startTimeout())
		var nw *worker
		nw, err = p.launch(ctx)
		cancel()
		if err == nil {
			p.idle <- nw
			return
		}
		p.opts.Worker.Logger.Warn("process pool: starting a replacement worker failed", "error", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-p.life.Done():
			return
		}
		backoff = min(2*backoff, time.Second)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.slots--
	if p.slots == 0 && p.broken == nil {
		p.broken = fmt.Errorf("every worker slot failed to start %d times in a row: %w: %w", maxLaunchFailures, sdk.ErrPluginFailed, err)
		close(p.brokenC)
	}
}

func (p *Pool) startTimeout() time.Duration {
	if t := p.opts.Worker.StartTimeout; t > 0 {
		return t
	}
	return 10 * time.Second
}

// envelope writes a call's message for the worker into w.msg, putting a
// large argument in shared memory.
func (w *worker) envelope(ctx context.Context, fn string, arg []byte, threshold int) ([]byte, error) {
	e := envelope{name: fn, hostPID: hostPID, argFD: int(w.arg.Fd()), resFD: int(w.res.Fd()), threshold: ^uint32(0)}
	if threshold >= 0 {
		e.threshold = uint32(min(threshold, 1<<31))
	} else {
		e.argFD, e.resFD = -1, -1
	}
	if dl, ok := ctx.Deadline(); ok {
		e.deadline = dl.UnixNano()
	}
	if cap(w.msg) > retainShm {
		w.msg = nil
	}
	if threshold >= 0 && len(arg) >= threshold {
		if _, err := w.arg.WriteAt(arg, 0); err != nil {
			return nil, fmt.Errorf("writing the %d-byte argument to shared memory: %w", len(arg), err)
		}
		w.argHigh = int64(len(arg))
		e.flags, e.argLen = flagArgShm, uint64(len(arg))
		w.msg = appendEnvelope(w.msg[:0], &e)
		return w.msg, nil
	}
	if n := envHeaderLen + len(fn) + len(arg); n > maxMessage {
		return nil, fmt.Errorf("a %d-byte argument is over the worker channel's %d-byte limit (shared memory is off)", len(arg), maxMessage)
	}
	w.msg = append(appendEnvelope(w.msg[:0], &e), arg...)
	return w.msg, nil
}

// hostPID is this process's pid, which the worker needs to open its memfds.
var hostPID = os.Getpid()

// result unpacks a worker's answer to a call of fn: the result (read from
// shared memory when it is there, if keep; copied out of the channel's
// buffer otherwise), or the call's error. An answer that breaks the rules
// wraps errMalformed. It releases shared memory past retainShm.
func (w *worker) result(fn string, raw []byte, keep bool) ([]byte, error) {
	a, err := decodeAnswer(raw)
	if err != nil {
		return nil, err
	}
	switch a.status {
	case statusFailed:
		return nil, &sdk.CallError{Func: fn, Message: string(a.body)}
	case statusUnknown:
		return nil, fmt.Errorf("process pool: call %q: worker %d: %s: %w", fn, w.pid, a.body, sdk.ErrUnknownFunc)
	case statusError:
		return nil, fmt.Errorf("process pool: call %q: worker %d: %s", fn, w.pid, a.body)
	}
	if a.flags&flagResShm == 0 {
		if !keep {
			return nil, nil
		}
		return append(make([]byte, 0, len(a.body)), a.body...), nil
	}
	if a.shmLen > 1<<40 {
		return nil, fmt.Errorf("%w: worker %d announced a %d-byte result", errMalformed, w.pid, a.shmLen)
	}
	w.resHigh = int64(a.shmLen)
	if !keep {
		return nil, nil
	}
	res := make([]byte, a.shmLen)
	if _, err := w.res.ReadAt(res, 0); err != nil {
		return nil, fmt.Errorf("process pool: call %q: reading the %d-byte result from shared memory: %w", fn, a.shmLen, err)
	}
	return res, nil
}

// trim gives back the pages of an argument or result larger than
// retainShm, so that one large call does not pin its size in every worker.
// A memfd that cannot shrink just stays large until its worker goes.
func (w *worker) trim() {
	if w.argHigh > retainShm {
		_ = w.arg.Truncate(0)
		w.argHigh = 0
	}
	if w.resHigh > retainShm {
		_ = w.res.Truncate(0)
		w.resHigh = 0
	}
}
