package kernel

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/loopkernel/loopkernel/sdk"
)

// The loop's resolver and function executor: back-ends of the sdk families
// that are not I/O. The kernel imports no back-end; a loop given none uses
// the one registered under the family's default name (sdk.DefaultResolver,
// sdk.DefaultExecutor), made on first use and closed with the loop, so that
// importing a back-end package (or a policy, which imports them all) is what
// makes lookups and registered functions work.

// ErrNoBackend: the loop needs a back-end of a family it was given none of,
// and none is registered under the family's default name.
var ErrNoBackend = errors.New("no back-end of that family")

// backends holds the loop's resolver and function executor, and whether the
// loop owns (and so closes) each.
type backends struct {
	resolver    sdk.Resolver
	ownResolver bool
	exec        sdk.Executor
	ownExec     bool
	started     map[*startedCall]struct{} // calls in flight on a CallStarter (executor_start.go)
	waiting     []waitingCall             // calls waiting on the loop for one of them to end
}

// WithResolver makes the loop resolve names through r, which it owns from
// then on: Close closes it if it has a Close method (a resolver in a plugin
// process does).
func WithResolver(r sdk.Resolver) Option {
	return func(l *Loop) { l.be.resolver, l.be.ownResolver = r, true }
}

// WithFuncExecutor makes the loop run registered functions (CallFunc) on
// ex, which it owns from then on and closes in Close.
func WithFuncExecutor(ex sdk.Executor) Option {
	return func(l *Loop) { l.be.exec, l.be.ownExec = ex, true }
}

// SetResolver makes the loop resolve names through r (a back-end placed
// in-process or behind a plugin), which stays the caller's; nil restores the
// default. Lookups already under way stay on the resolver they started with;
// if the loop owned that one (the default, or one given by WithResolver) it
// is closed now, and a lookup still waiting on a resolver that must close to
// end (a plugin) fails.
func (l *Loop) SetResolver(r sdk.Resolver) {
	l.be.closeResolver()
	l.be.resolver, l.be.ownResolver = r, false
}

// Resolver returns the resolver the loop's lookups go to, making the default
// on first use; nil if there is none (see ErrNoBackend).
func (l *Loop) Resolver() sdk.Resolver {
	r, _ := l.resolverOrErr()
	return r
}

func (l *Loop) resolverOrErr() (sdk.Resolver, error) {
	if l.be.resolver == nil {
		r, err := defaultBackend(sdk.Resolvers, sdk.DefaultResolver)
		if err != nil {
			return nil, err
		}
		l.be.resolver, l.be.ownResolver = r, true
	}
	return l.be.resolver, nil
}

// SetFuncExecutor makes the loop run registered functions on ex, which
// stays the caller's; nil restores the default. An executor the loop owned
// is closed now, failing the calls still in flight on it.
func (l *Loop) SetFuncExecutor(ex sdk.Executor) {
	l.be.closeExec()
	l.be.exec, l.be.ownExec = ex, false
}

// FuncExecutor returns the executor CallFunc runs functions on, making the
// default on first use; nil if there is none (see ErrNoBackend).
func (l *Loop) FuncExecutor() sdk.Executor {
	ex, _ := l.funcExecutorOrErr()
	return ex
}

func (l *Loop) funcExecutorOrErr() (sdk.Executor, error) {
	if l.be.exec == nil {
		ex, err := defaultBackend(sdk.Executors, sdk.DefaultExecutor)
		if err != nil {
			return nil, err
		}
		l.be.exec, l.be.ownExec = ex, true
	}
	return l.be.exec, nil
}

func defaultBackend[T any](r *sdk.Registry[T], name string) (T, error) {
	if _, ok := r.Lookup(name); !ok {
		var zero T
		return zero, fmt.Errorf("no %s was given to the loop and none is registered as %q (import its package, or build the loop through a policy): %w",
			r.Family(), name, ErrNoBackend)
	}
	return r.New(name)
}

// CallFunc runs the registered function f on arg on the loop's function
// executor and returns a future for its result: asyncio's run_in_executor
// for work that may run in another process (a process-pool executor), which
// is why the function is named and its argument and result are encoded
// (sdk.NewFunc) rather than a closure. The call waits off the loop, on the
// default executor, or on the loop itself when the executor can start a
// call without blocking (sdk.CallStarter: executor_start.go); cancelling the
// future abandons the wait. The function's
// own failure is a *sdk.CallError; a worker that died during the call wraps
// sdk.ErrBackendDied.
func CallFunc[A, R any](l *Loop, f sdk.Func[A, R], arg A) (*Future[R], error) {
	if err := l.checkUsable(); err != nil {
		return nil, fmt.Errorf("call %q: %w", f.Name(), err)
	}
	ex, err := l.funcExecutorOrErr()
	if err != nil {
		return nil, fmt.Errorf("call %q: %w", f.Name(), err)
	}
	b, err := f.Encode(arg)
	if err != nil {
		return nil, err
	}
	if cs, ok := ex.(sdk.CallStarter); ok && l.drv.Capabilities().Has(sdk.CapWatch) {
		return callFunc(l, cs, f, b)
	}
	return offLoop(l, "call "+f.Name(), func(ctx context.Context) (R, error) {
		res, err := ex.Call(ctx, f.Name(), b)
		if err != nil {
			var zero R
			return zero, err
		}
		return f.Decode(res)
	})
}

// close closes the back-ends the loop owns; errors are the loop's logger's
// business, since Close has nothing better to do with them.
func (b *backends) close() error {
	return errors.Join(b.closeResolver(), b.closeExec())
}

func (b *backends) closeResolver() error {
	r, own := b.resolver, b.ownResolver
	b.resolver, b.ownResolver = nil, false
	if c, ok := r.(io.Closer); ok && own {
		return c.Close()
	}
	return nil
}

func (b *backends) closeExec() error {
	ex, own := b.exec, b.ownExec
	b.exec, b.ownExec = nil, false
	if ex != nil && own {
		return ex.Close()
	}
	return nil
}
