package serve

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// staticTree makes a root with files, links that stay inside and links
// that leave it, and a FIFO; it returns the root.
func staticTree(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "sub")} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	write := func(p, s string) { require.NoError(t, os.WriteFile(p, []byte(s), 0o644)) }
	write(filepath.Join(root, "a.txt"), "a")
	write(filepath.Join(root, "sub", "b.txt"), "b")
	write(filepath.Join(outside, "secret"), "secret")
	link := func(target, name string) { require.NoError(t, os.Symlink(target, filepath.Join(root, name))) }
	link("a.txt", "rel-in")
	link("sub", "dir-in")
	link("../a.txt", "sub/up-in")
	link("../outside/secret", "rel-out")
	link(filepath.Join(outside, "secret"), "abs-out")
	link(filepath.Join(root, "a.txt"), "abs-in") // absolute, pointing inside: refused too
	link("../outside", "dir-out")
	link("loop", "loop")
	require.NoError(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	return root
}

func TestStaticRootContainsSymlinks(t *testing.T) {
	for _, mode := range []string{"openat2", "os.Root"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "os.Root" {
				useOpenat2.Store(false)
				t.Cleanup(func() { useOpenat2.Store(true) })
			}
			root := staticTree(t)
			r, err := openStaticRoot(root, false)
			require.NoError(t, err)
			defer r.Close()
			served := map[string]string{"a.txt": "a", "sub/b.txt": "b", "rel-in": "a", "dir-in/b.txt": "b", "sub/up-in": "a",
				"../../a.txt": "a", "sub/../a.txt": "a"}
			for p, want := range served {
				f, _, err := r.open(p)
				require.NoError(t, err, p)
				got, _ := io.ReadAll(f)
				f.Close()
				require.Equal(t, want, string(got), p)
			}
			for _, p := range []string{"rel-out", "abs-out", "abs-in", "dir-out/secret"} {
				_, _, err := r.open(p)
				require.True(t, errors.Is(err, errEscapes), "%s: %v", p, err)
			}
			for _, p := range []string{"missing", "", "sub", "fifo", "loop"} {
				_, _, err := r.open(p)
				require.Error(t, err, p)
				require.False(t, errors.Is(err, errEscapes), "%s is not an escape: %v", p, err)
			}
			_, _, err = r.open("fifo")
			require.True(t, errors.Is(err, fs.ErrNotExist), "a FIFO is not served (and opening it did not block): %v", err)
		})
	}
	if !useOpenat2.Load() {
		t.Log("openat2 is not available here: both runs used os.Root")
	}
}

func TestStaticRootFollowSymlinks(t *testing.T) {
	root := staticTree(t)
	r, err := openStaticRoot(root, true)
	require.NoError(t, err)
	defer r.Close()
	for _, p := range []string{"rel-out", "abs-out", "dir-out/secret"} {
		f, _, err := r.open(p)
		require.NoError(t, err, p)
		got, _ := io.ReadAll(f)
		f.Close()
		require.Equal(t, "secret", string(got))
	}
	_, _, err = r.open("fifo")
	require.True(t, errors.Is(err, fs.ErrNotExist), "a FIFO is refused in this mode too: %v", err)
}

func TestStaticRootMissing(t *testing.T) {
	_, err := openStaticRoot(filepath.Join(t.TempDir(), "nope"), false)
	require.ErrorIs(t, err, fs.ErrNotExist)
	f := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(f, nil, 0o644))
	_, err = openStaticRoot(f, false)
	require.ErrorContains(t, err, "not a directory")
}
