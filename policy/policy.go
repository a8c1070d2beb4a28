// Package policy is loopkernel's event-loop policy system, the Go form of
// asyncio's: a registry of named recipes for building a loop (which selector,
// in which placement, with which executor), the process-wide policy in force,
// and the "current loop" that GetEventLoop hands out.
//
// A program picks a policy by name, so that the same binary can run on the
// in-process epoll selector, on poll, or on a selector plugin in another
// process without being rebuilt:
//
//	p, err := policy.Select(*policyFlag) // flag, else $LOOPKERNEL_POLICY, else "epoll"
//	if err != nil { ... }                // the error lists the known names
//	policy.SetEventLoopPolicy(p)
//	loop, err := policy.GetEventLoop()
//
// Why a registry of names rather than constructors in main: the names are what
// a person types (a flag, an environment variable, a CI matrix), what the
// conformance suite and benchmarks iterate over, and what help texts list.
//
// The epoll-plugin and poll-plugin policies run the selector in a copy of
// the program's own executable, so a program that offers them must call
// sdk/plugin.ServeBundled first thing in main (and in TestMain): that call
// is what turns the re-executed copy into the plugin.
//
// Unlike asyncio, whose policies keep one current loop per OS thread, a Go
// program has no goroutine-local storage, so the policy keeps one current
// loop for the process; GetEventLoop still returns the running loop first
// inside a callback or coroutine, as asyncio.get_event_loop does.
package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/loopkernel/loopkernel/kernel"
	"github.com/loopkernel/loopkernel/sdk"
)

const (
	// Default is the policy used when neither a flag nor the environment
	// names one: the in-process epoll selector, whose cost per wait does not
	// grow with idle registrations.
	Default = "epoll"
	// EnvVar names the environment variable that selects a policy when no
	// flag does.
	EnvVar = "LOOPKERNEL_POLICY"
)

// Sentinel errors; every error this package returns for these conditions
// wraps one, so callers can use errors.Is.
var (
	// ErrUnknownPolicy: no policy is registered under the name asked for.
	ErrUnknownPolicy = errors.New("unknown event loop policy")
)

// Policy is a named recipe for event loops (asyncio's event loop policy).
// Register makes one selectable by name; NewEventLoop builds a loop from it.
type Policy struct {
	// Name is what users type: a flag value or $LOOPKERNEL_POLICY.
	Name string
	// Description is one line for help texts and `loopkernel policies`.
	Description string
	// Selector is the selector spec each new loop opens:
	//
	//	NAME          in-process back-end NAME ("epoll", "poll")
	//	plugin:NAME   the back-end NAME in a plugin process
	//	plugin:PATH   the plugin executable at PATH (a spec containing '/')
	Selector string
	// Proactor, if set, names an in-process completion back-end
	// (sdk.Proactors, e.g. "uring"): each new loop then runs on the
	// completion driver (driver/completion) over it, and Selector is not
	// opened. Where the back-end is refused, NewEventLoop fails with an
	// error that says why and names the epoll policy, unless
	// ProactorFallback is set.
	Proactor string
	// ProactorFallback makes a loop whose proactor is refused here
	// (io_uring blocked by a seccomp profile such as Docker's default,
	// moby#46762, or by the kernel.io_uring_disabled sysctl; an error
	// wrapping proactor.ErrRefused) run on the policy's Selector instead,
	// with one warning logged per process and proactor spec. Off by
	// default: a program that chose io_uring for its system-call count
	// should hear, not guess, that it is not getting it. Other failures to
	// open the proactor are never hidden.
	ProactorFallback bool
	// Resolver is the resolver spec (getaddrinfo, getnameinfo) of each new
	// loop, of the same forms as Selector over sdk.Resolvers; empty means
	// sdk.DefaultResolver in process.
	Resolver string
	// Executor is the spec of each new loop's function executor (the
	// sdk.Executor family, which kernel.CallFunc runs registered functions
	// on), of the same forms over sdk.Executors; empty means
	// sdk.DefaultExecutor in process.
	Executor string
	// DefaultExecutor builds the closure executor of each new loop (what
	// RunInExecutor uses when given nil). Nil leaves it to the kernel, which
	// makes a kernel.NewGoExecutor(0) on first use and shuts it down in
	// Close; an executor made here is not shut down by Close (the kernel
	// treats an executor it was given as the caller's).
	DefaultExecutor func() kernel.Executor
	// Options are applied to every new loop after the policy's own (a
	// logger, debug mode).
	Options []kernel.Option
	// PluginFallback makes each family's out-of-process back-end fall back
	// to running in process when its plugin cannot be kept alive (it keeps
	// crashing or hanging through its restart budget; see sdk/plugin
	// Spec.Fallback): to its in-process twin, the back-end of the same
	// name, or for a third-party plugin with no twin to the family's
	// default (epoll, go, goroutine). A warning is logged when it happens.
	// Without it (the default) the back-end fails: for a selector, the
	// loop stops with an error wrapping sdk.ErrPluginFailed. The trade-off:
	// a fallback keeps the program serving, but no longer isolated from
	// the back-end's faults, and for a third-party plugin on a back-end it
	// did not choose.
	PluginFallback bool
}

// NewEventLoop opens the policy's selector and returns a new loop on it
// (asyncio: policy.new_event_loop()). The caller owns the loop and must
// Close it.
func (p *Policy) NewEventLoop() (*kernel.Loop, error) {
	return p.NewEventLoopContext(context.Background())
}

// NewEventLoopContext is NewEventLoop with a context bounding the back-ends'
// start, which for a plugin placement means starting a process. The loop
// owns every back-end it was built with and closes them in Close, except
// the resolver: loops with the same resolver spec share one, and the last
// of them to close closes it (resolver_shared.go).
func (p *Policy) NewEventLoopContext(ctx context.Context) (_ *kernel.Loop, err error) {
	var closers []func() error
	defer func() {
		if err != nil {
			for _, c := range closers {
				c()
			}
			err = fmt.Errorf("policy %q: %w", p.Name, err)
		}
	}()
	opts := make([]kernel.Option, 0, len(p.Options)+3)
	if p.Resolver != "" {
		r, err := openSharedResolver(ctx, p.Resolver, fallbackFor(p.PluginFallback, sdk.Resolvers, p.Resolver, sdk.DefaultResolver))
		if err != nil {
			return nil, err
		}
		if c, ok := r.(io.Closer); ok {
			closers = append(closers, c.Close)
		}
		opts = append(opts, kernel.WithResolver(r))
	}
	if p.Executor != "" {
		ex, err := openBackend(ctx, sdk.Executors, p.Executor, fallbackFor(p.PluginFallback, sdk.Executors, p.Executor, sdk.DefaultExecutor))
		if err != nil {
			return nil, err
		}
		closers = append(closers, ex.Close)
		opts = append(opts, kernel.WithFuncExecutor(ex))
	}
	if p.DefaultExecutor != nil {
		opts = append(opts, kernel.WithExecutor(p.DefaultExecutor()))
	}
	if p.Proactor != "" {
		d, err := p.proactorDriver(ctx)
		if err != nil {
			return nil, err
		}
		if d != nil {
			return kernel.NewOnDriver(d, append(opts, p.Options...)...), nil
		}
		// Refused, and ProactorFallback said to use the selector.
	}
	sel, err := openBackend(ctx, sdk.Selectors, p.Selector, fallbackFor(p.PluginFallback, sdk.Selectors, p.Selector, Default))
	if err != nil {
		return nil, err
	}
	return kernel.New(sel, append(opts, p.Options...)...), nil
}

// String is the policy's name, for logs.
func (p *Policy) String() string { return p.Name }

func (p *Policy) clone() *Policy {
	c := *p
	c.Options = slices.Clone(p.Options)
	return &c
}

// state is everything the package keeps; one mutex guards it all, since
// none of it is on a hot path.
var state struct {
	sync.Mutex
	registry map[string]*Policy
	order    []string // registration order, for stable listings
	current  *Policy  // nil: the Default policy
	loop     *kernel.Loop
}

// Register makes p selectable by name. Like sdk.Registry.Register it is meant for init
// functions and panics on an empty name, an empty selector spec or a name
// registered twice: each is a programming error that would otherwise show up
// later as the wrong loop being built. Names starting with "plugin:" are
// reserved for ad-hoc plugin specs (see Select).
func Register(p Policy) {
	if p.Name == "" || p.Selector == "" {
		panic("policy.Register: empty name or selector spec")
	}
	if strings.HasPrefix(p.Name, pluginPrefix) {
		panic(fmt.Sprintf("policy.Register: name %q: the plugin: prefix is reserved for ad-hoc specs", p.Name))
	}
	state.Lock()
	defer state.Unlock()
	if state.registry == nil {
		state.registry = make(map[string]*Policy)
	}
	if _, dup := state.registry[p.Name]; dup {
		panic(fmt.Sprintf("policy.Register: policy %q registered twice", p.Name))
	}
	state.registry[p.Name] = p.clone()
	state.order = append(state.order, p.Name)
}

// Lookup returns a copy of the policy registered under name. An unknown name
// fails with an error wrapping ErrUnknownPolicy that lists the known names,
// because the caller is usually a person who mistyped a flag.
func Lookup(name string) (*Policy, error) {
	state.Lock()
	defer state.Unlock()
	if p, ok := state.registry[name]; ok {
		return p.clone(), nil
	}
	return nil, unknown(name)
}

// unknown builds the unknown-name error; state must be locked.
func unknown(name string) error {
	return fmt.Errorf("policy %q: %w (known: %s; or %sNAME, %sPATH for a selector plugin)",
		name, ErrUnknownPolicy, strings.Join(sortedNames(), ", "), pluginPrefix, pluginPrefix)
}

// Names lists the registered policy names in sorted order.
func Names() []string {
	state.Lock()
	defer state.Unlock()
	return sortedNames()
}

func sortedNames() []string {
	names := slices.Clone(state.order)
	slices.Sort(names)
	return names
}

// Select picks a policy by name: flagValue if it is not empty, else
// $LOOPKERNEL_POLICY if set and not empty, else Default. A name of the form
// plugin:NAME or plugin:PATH that is not registered yields an ad-hoc policy
// for that selector plugin, so a third-party plugin needs no registration.
func Select(flagValue string) (*Policy, error) {
	name := flagValue
	if name == "" {
		name = os.Getenv(EnvVar)
	}
	if name == "" {
		name = Default
	}
	p, err := Lookup(name)
	if err == nil {
		return p, nil
	}
	if rest, ok := strings.CutPrefix(name, pluginPrefix); ok && rest != "" {
		return &Policy{
			Name:        name,
			Description: "selector plugin " + rest + " (ad hoc)",
			Selector:    name,
		}, nil
	}
	if flagValue == "" && name != Default {
		return nil, fmt.Errorf("from $%s: %w", EnvVar, err)
	}
	return nil, err
}

// FromEnv is Select(""): the policy $LOOPKERNEL_POLICY names, or Default.
func FromEnv() (*Policy, error) { return Select("") }

// GetEventLoopPolicy returns (a copy of) the policy in force: the one last
// given to SetEventLoopPolicy, else the Default policy. It does not read the
// environment; programs that honour $LOOPKERNEL_POLICY call Select or FromEnv
// and set the result.
func GetEventLoopPolicy() *Policy {
	state.Lock()
	defer state.Unlock()
	return currentPolicy().clone()
}

// currentPolicy returns the policy in force; state must be locked.
func currentPolicy() *Policy {
	if state.current != nil {
		return state.current
	}
	if p, ok := state.registry[Default]; ok {
		return p
	}
	// Only reachable if the builtin registrations were removed from this
	// package; fail loudly rather than build a loop on nothing.
	panic("policy: default policy " + Default + " is not registered")
}

// SetEventLoopPolicy puts p in force; nil restores the Default policy. The
// current loop belonged to the previous policy, so it is forgotten (not
// closed: whoever got it from GetEventLoop owns it) and the next GetEventLoop
// builds a loop from p.
func SetEventLoopPolicy(p *Policy) {
	if p != nil && p.Selector == "" {
		// Fail here, where the mistake is, rather than at the next
		// GetEventLoop far away.
		panic(fmt.Sprintf("policy.SetEventLoopPolicy: policy %q has no selector spec", p.Name))
	}
	state.Lock()
	defer state.Unlock()
	if p != nil {
		p = p.clone()
	}
	state.current = p
	state.loop = nil
}

// NewEventLoop builds a new loop from the policy in force (asyncio:
// asyncio.new_event_loop()). The caller owns it.
func NewEventLoop() (*kernel.Loop, error) {
	return GetEventLoopPolicy().NewEventLoop()
}

// GetEventLoop returns the running loop when called from a callback or from
// a task's or async generator's coroutine (kernel.RunningLoop, which knows
// the goroutine a coroutine runs on); otherwise the current loop, which it
// creates from the policy in force on first use, like
// asyncio.get_event_loop() on the main thread. A current
// loop that has been closed is returned as it is (scheduling on it fails with
// kernel.ErrClosed), as in asyncio; SetEventLoop replaces it.
func GetEventLoop() (*kernel.Loop, error) {
	if l := kernel.RunningLoop(); l != nil {
		return l, nil
	}
	// One creator at a time, so concurrent first calls share one loop; the
	// state lock is not held while the loop is built, since building may
	// start a plugin process and runs the policy's own functions, which may
	// use this package.
	creating.Lock()
	defer creating.Unlock()
	state.Lock()
	l, p := state.loop, currentPolicy().clone()
	state.Unlock()
	if l != nil {
		return l, nil
	}
	l, err := p.NewEventLoop()
	if err != nil {
		return nil, fmt.Errorf("get event loop: %w", err)
	}
	state.Lock()
	defer state.Unlock()
	if state.loop != nil { // SetEventLoop won the race: it was explicit
		l.Close()
		return state.loop, nil
	}
	state.loop = l
	return l, nil
}

// creating serialises GetEventLoop's creation of the current loop.
var creating sync.Mutex

// SetEventLoop makes l the current loop (asyncio.set_event_loop); nil clears
// it, so the next GetEventLoop builds a new one.
func SetEventLoop(l *kernel.Loop) {
	state.Lock()
	defer state.Unlock()
	state.loop = l
}

// pluginPrefix marks a selector spec that runs the back-end out of process.
const pluginPrefix = "plugin:"
