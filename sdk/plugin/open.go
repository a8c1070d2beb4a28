package plugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/loopkernel/loopkernel/sdk"
)

// PluginDirEnv names the environment variable holding the default plugin
// directory (the CLI's --plugin-dir overrides it).
const PluginDirEnv = "LOOPKERNEL_PLUGIN_DIR"

// executablePrefix is how a third-party plugin executable is named in a
// plugin directory: loopkernel-plugin-NAME serves back-end NAME.
const executablePrefix = "loopkernel-plugin-"

// Discover lists the plugin executables in dir: regular files named
// loopkernel-plugin-NAME with an execute bit, sorted by name, as Specs ready
// for Launch (Name and Path set). A missing directory is an error; an empty
// one is not.
func Discover(dir string) ([]Spec, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("plugin directory: %w", err)
	}
	var found []Spec
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), executablePrefix)
		if !ok || name == "" {
			continue
		}
		path := filepath.Join(dir, e.Name())
		fi, err := os.Stat(path) // follows symlinks, as exec would
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			continue
		}
		found = append(found, Spec{Name: name, Path: path})
	}
	slices.SortFunc(found, func(a, b Spec) int { return strings.Compare(a.Name, b.Name) })
	return found, nil
}

// Options tell Resolve and Open where to look and how to supervise.
type Options struct {
	// PluginDir is searched for loopkernel-plugin-NAME when NAME is not
	// bundled. Empty means $LOOPKERNEL_PLUGIN_DIR.
	PluginDir string
	// Template supplies everything but Name and Path for out-of-process
	// back-ends: Logger, SHA256, Config, timeouts, restart policy.
	Template Spec
}

// Resolve turns a selector spec string into a factory; each call of the
// factory makes a new selector (a new plugin process, out-of-process). The
// syntax:
//
//	NAME              in-process: the back-end registered as NAME (epoll, poll)
//	plugin:NAME       out-of-process: the bundled back-end NAME, run by
//	                  re-executing this binary; failing that, the executable
//	                  loopkernel-plugin-NAME in the plugin directory
//	plugin:PATH       out-of-process: the executable at PATH (any spec whose
//	                  rest contains a '/'; write ./x for one in the current
//	                  directory). Its name is whatever it serves.
//
// Errors (unknown name, missing executable) are reported here, before any
// factory call.
func Resolve(spec string, opts Options) (func() (sdk.Selector, error), error) {
	inproc, ps, err := resolve(spec, opts)
	if err != nil || inproc != nil {
		return inproc, err
	}
	return func() (sdk.Selector, error) { return Launch(context.Background(), *ps) }, nil
}

// Open resolves spec and makes one selector; ctx bounds a plugin's start.
func Open(ctx context.Context, spec string, opts Options) (sdk.Selector, error) {
	inproc, ps, err := resolve(spec, opts)
	if err != nil {
		return nil, err
	}
	if inproc != nil {
		return inproc()
	}
	return Launch(ctx, *ps)
}

// resolve returns either an in-process factory or a Spec to launch.
func resolve(spec string, opts Options) (func() (sdk.Selector, error), *Spec, error) {
	rest, outOfProcess := strings.CutPrefix(spec, "plugin:")
	if !outOfProcess {
		if f, ok := sdk.Selectors.Lookup(spec); ok {
			return f, nil, nil
		}
		return nil, nil, fmt.Errorf("selector %q: no such back-end (have %v, or plugin:NAME, plugin:PATH)", spec, sdk.Selectors.Names())
	}
	if rest == "" {
		return nil, nil, fmt.Errorf("selector %q: plugin: needs a name or a path", spec)
	}
	ps := opts.Template
	ps.Name, ps.Path = rest, ""
	if strings.ContainsRune(rest, '/') {
		ps.Name, ps.Path = "", rest
		if fi, err := os.Stat(rest); err != nil {
			return nil, nil, fmt.Errorf("selector %q: %w", spec, err)
		} else if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return nil, nil, fmt.Errorf("selector %q: %s is not an executable file", spec, rest)
		}
	} else if _, bundled := sdk.Selectors.Lookup(rest); !bundled {
		dir := opts.PluginDir
		if dir == "" {
			dir = os.Getenv(PluginDirEnv)
		}
		path, err := findInDir(dir, rest)
		if err != nil {
			return nil, nil, fmt.Errorf("selector %q: %w", spec, err)
		}
		ps.Path = path
	}
	return nil, &ps, nil
}

func findInDir(dir, name string) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("no bundled back-end %q (have %v) and no plugin directory (%s)", name, sdk.Selectors.Names(), PluginDirEnv)
	}
	found, err := Discover(dir)
	if err != nil {
		return "", err
	}
	for _, s := range found {
		if s.Name == name {
			return s.Path, nil
		}
	}
	return "", fmt.Errorf("no bundled back-end %q and no %s%s in %s: %w", name, executablePrefix, name, dir, os.ErrNotExist)
}
