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

// Resolve turns a back-end spec string of reg's family into a factory;
// each call of the factory makes a new back-end (a new plugin process,
// out-of-process). The syntax is the same for every family:
//
//	NAME              in-process: the back-end registered as NAME in reg
//	plugin:NAME       out-of-process: the bundled back-end NAME, run by
//	                  re-executing this binary; failing that, the executable
//	                  loopkernel-plugin-NAME in the plugin directory
//	plugin:PATH       out-of-process: the executable at PATH (any spec whose
//	                  rest contains a '/'; write ./x for one in the current
//	                  directory). Its name is whatever it serves.
//
// Errors (unknown name, missing executable) are reported here, before any
// factory call.
func Resolve[T any](reg *sdk.Registry[T], spec string, opts Options) (func() (T, error), error) {
	inproc, ps, err := resolve(reg, spec, opts)
	if err != nil || inproc != nil {
		return inproc, err
	}
	return func() (T, error) { return Launch(context.Background(), reg, *ps) }, nil
}

// Open resolves spec and makes one back-end of reg's family; ctx bounds a
// plugin's start.
func Open[T any](ctx context.Context, reg *sdk.Registry[T], spec string, opts Options) (T, error) {
	inproc, ps, err := resolve(reg, spec, opts)
	if err != nil {
		var zero T
		return zero, err
	}
	if inproc != nil {
		return inproc()
	}
	return Launch(ctx, reg, *ps)
}

// resolve returns either an in-process factory or a Spec to launch.
func resolve[T any](reg *sdk.Registry[T], spec string, opts Options) (func() (T, error), *Spec, error) {
	fam := reg.Family()
	rest, outOfProcess := strings.CutPrefix(spec, "plugin:")
	if !outOfProcess {
		if f, ok := reg.Lookup(spec); ok {
			return f, nil, nil
		}
		return nil, nil, fmt.Errorf("%s %q: %w (have %v, or plugin:NAME, plugin:PATH)", fam, spec, sdk.ErrUnknownBackend, reg.Names())
	}
	if rest == "" {
		return nil, nil, fmt.Errorf("%s %q: plugin: needs a name or a path", fam, spec)
	}
	ps := opts.Template
	ps.Name, ps.Path = rest, ""
	if strings.ContainsRune(rest, '/') {
		ps.Name, ps.Path = "", rest
		if fi, err := os.Stat(rest); err != nil {
			return nil, nil, fmt.Errorf("%s %q: %w", fam, spec, err)
		} else if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return nil, nil, fmt.Errorf("%s %q: %s is not an executable file", fam, spec, rest)
		}
	} else if _, bundled := reg.Lookup(rest); !bundled {
		dir := opts.PluginDir
		if dir == "" {
			dir = os.Getenv(PluginDirEnv)
		}
		path, err := findInDir(dir, rest, fam, reg.Names())
		if err != nil {
			return nil, nil, fmt.Errorf("%s %q: %w", fam, spec, err)
		}
		ps.Path = path
	}
	return nil, &ps, nil
}

func findInDir(dir, name, fam string, have []string) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("no bundled %s %q (have %v) and no plugin directory (%s)", fam, name, have, PluginDirEnv)
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
	return "", fmt.Errorf("no bundled %s %q and no %s%s in %s: %w", fam, name, executablePrefix, name, dir, os.ErrNotExist)
}
