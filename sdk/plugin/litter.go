package plugin

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A plugin's gRPC socket lives in a directory the plugin makes in $TMPDIR
// (plugin-dirNNN, holding one socket pluginNNN). The host removes it as
// soon as it has connected, so a running plugin has nothing on disk; what
// can still leave one behind is a host killed in the few milliseconds of a
// start together with its plugin (a process-group, cgroup or OOM kill):
// then nobody is left to remove it. (Older hosts, which let go-plugin's
// Client.Start make a directory before the fork, also left one when killed
// alone at that moment; attach.go says why that no longer happens.)
// sweepStale, run once per process when its first plugin starts, removes
// such leftovers.

// staleAge is how old (by modification time) a socket directory must be
// before a sweep may remove it: far longer than any start takes, so a
// directory that a live host (this one or another) has just made for a
// start in progress is never taken for litter.
const staleAge = time.Minute

var sweepOnce sync.Once

// sweepInBackground sweeps os.TempDir() once per process, off the start's
// path: a start must not wait for a directory listing of $TMPDIR.
func sweepInBackground() {
	sweepOnce.Do(func() {
		go sweepStale(os.TempDir(), time.Now().Add(-staleAge))
	})
}

// sweepStale removes the go-plugin socket directories in dir that are
// litter, and returns their paths. A directory is litter only if all of
// this holds, so that nothing anyone still uses (or anything not made by a
// plugin start) is ever touched:
//   - it is named plugin-dirDIGITS, is a real directory (not a symlink),
//     belongs to this user, has mode 0700 (what go-plugin makes), and was
//     last modified before notAfter;
//   - it holds nothing but sockets named pluginDIGITS;
//   - none of those sockets is bound by a live process (/proc/net/unix).
//
// The name is go-plugin's, so a stale directory of another go-plugin host
// of the same user is removed too; by the rules above that is one whose
// plugin is dead, which that host would have removed itself.
func sweepStale(dir string, notAfter time.Time) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var bound func(string) bool // read lazily: most sweeps find no candidate
	uid := uint32(os.Geteuid())
	var removed []string
	for _, e := range entries {
		if !e.IsDir() || !digitsAfter(e.Name(), "plugin-dir") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(path)
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 || !fi.ModTime().Before(notAfter) {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != uid {
			continue
		}
		inside, err := os.ReadDir(path)
		if err != nil {
			continue
		}
		ours := true
		for _, s := range inside {
			if s.Type()&os.ModeSocket == 0 || !digitsAfter(s.Name(), "plugin") {
				ours = false
				break
			}
			if bound == nil {
				bound = boundUnixPaths()
			}
			if bound(filepath.Join(path, s.Name())) {
				ours = false // a live plugin listens there
				break
			}
		}
		if !ours {
			continue
		}
		removeSocketDir(path)
		if _, err := os.Lstat(path); os.IsNotExist(err) {
			removed = append(removed, path)
		}
	}
	return removed
}

// digitsAfter reports whether name is prefix followed by one or more
// decimal digits (os.MkdirTemp's and os.CreateTemp's random part).
func digitsAfter(name, prefix string) bool {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// boundUnixPaths tells which filesystem paths Unix sockets of live
// processes (in this network namespace) are bound to. A socket whose
// process has died is not listed, although its file remains. If the list
// cannot be read, every path counts as bound, so that nothing is removed
// on a guess.
func boundUnixPaths() func(string) bool {
	everything := func(string) bool { return true }
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return everything
	}
	defer f.Close()
	paths := make(map[string]bool)
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		fields := strings.Fields(sc.Text())
		if len(fields) >= 8 && strings.HasPrefix(fields[7], "/") {
			paths[fields[7]] = true
		}
	}
	if sc.Err() != nil {
		return everything
	}
	return func(p string) bool { return paths[p] }
}
