package serve

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// staticRoot opens the files of `serve http --root` without letting a path
// leave the root. The request path is cleaned first, so ".." cannot climb
// out textually; symbolic links are the other way out. Unless symlinks may
// be followed anywhere, every open resolves the path beneath a descriptor of
// the root held open since start, in one step the file system checks as a
// whole: openat2(2) with RESOLVE_BENEATH, which refuses any component,
// symbolic link targets included, that would resolve outside the root
// (absolute link targets included, even ones pointing back inside). There
// is no window between a check and the open for a link to be swapped in.
// Where openat2 is missing (Linux before 5.6, or a seccomp filter denying
// it), os.Root does the same walk component by component with
// O_NOFOLLOW, also without a window.
//
// Every open is non-blocking, so a FIFO planted under the root cannot stall
// the loop in open(2); only regular files are served.
type staticRoot struct {
	dir    string
	follow bool
	dirfd  int      // O_PATH descriptor of dir; -1 when following links
	root   *os.Root // the fallback; opened on first need
}

// errEscapes marks a path that resolves outside the root.
var errEscapes = errors.New("path resolves outside --root")

// useOpenat2 is cleared the first time openat2 turns out not to be
// available, and by tests that exercise the fallback.
var useOpenat2 atomic.Bool

func init() { useOpenat2.Store(true) }

func openStaticRoot(dir string, follow bool) (*staticRoot, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("--root: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("--root %s: not a directory", dir)
	}
	r := &staticRoot{dir: dir, follow: follow, dirfd: -1}
	if follow {
		return r, nil
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("--root %s: %w", dir, &os.PathError{Op: "open", Path: dir, Err: err})
	}
	r.dirfd = fd
	if r.root, err = os.OpenRoot(dir); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("--root: %w", err)
	}
	return r, nil
}

func (r *staticRoot) Close() error {
	if r.dirfd >= 0 {
		unix.Close(r.dirfd)
		r.dirfd = -1
	}
	if r.root != nil {
		return r.root.Close()
	}
	return nil
}

// open opens the file that rel (a request path below /static/, already
// unescaped) names. It returns an error wrapping fs.ErrNotExist for what is
// not there or not a regular file, errEscapes for a path whose links leave
// the root, or another error.
func (r *staticRoot) open(rel string) (*os.File, os.FileInfo, error) {
	name := path.Clean("/" + rel)[1:] // relative, no "..", "" for the root
	if name == "" {
		return nil, nil, fs.ErrNotExist
	}
	var f *os.File
	var err error
	switch {
	case r.follow:
		f, err = os.OpenFile(filepath.Join(r.dir, filepath.FromSlash(name)), os.O_RDONLY|unix.O_NONBLOCK, 0)
	case useOpenat2.Load():
		f, err = r.openat2(name)
		if err == nil || !errors.Is(err, errNoOpenat2) {
			break
		}
		useOpenat2.Store(false)
		fallthrough
	default:
		f, err = r.root.OpenFile(filepath.FromSlash(name), os.O_RDONLY|unix.O_NONBLOCK, 0)
		if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) &&
			!errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
			// os.Root reports a path escaping it with an unexported error:
			// what is left after the ordinary failures.
			err = fmt.Errorf("%w: %w", errEscapes, err)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s: not a regular file: %w", name, fs.ErrNotExist)
	}
	return f, st, nil
}

var errNoOpenat2 = errors.New("openat2 not available")

func (r *staticRoot) openat2(name string) (*os.File, error) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(r.dirfd, name, &how)
		switch {
		case err == nil:
			return os.NewFile(uintptr(fd), filepath.Join(r.dir, name)), nil
		case err == unix.EINTR:
			continue
		case err == unix.ENOSYS || err == unix.EPERM || err == unix.E2BIG:
			return nil, errNoOpenat2
		case err == unix.EXDEV:
			return nil, &os.PathError{Op: "openat2", Path: name, Err: fmt.Errorf("%w: %w", errEscapes, err)}
		default:
			return nil, &os.PathError{Op: "openat2", Path: name, Err: err}
		}
	}
}
