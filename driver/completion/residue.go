package completion

import "golang.org/x/sys/unix"

// residue is what a read completed but nobody took before the descriptor
// was closed in the driver (a sock_recv with a buffer smaller than what
// arrived closes its hold on the descriptor right after): the kernel's
// sock_* calls open and close the descriptor in the driver around every
// operation while the socket itself stays open, and those bytes must reach
// the next sock_recv. It is kept by descriptor number with the socket's
// identity (device and inode), so that a new socket that got the same
// number never sees it.
type residue struct {
	dev, ino uint64
	data     []byte
	eof      bool
}

// keepResidue stashes f's unread bytes at its Close (one fstat, only when
// there are some).
func (d *Driver) keepResidue(f *file) {
	if len(f.stash) == 0 && !f.stashEOF {
		return
	}
	var st unix.Stat_t
	if unix.Fstat(f.fd, &st) != nil {
		return
	}
	if d.residue == nil {
		d.residue = make(map[int]residue)
	}
	d.residue[f.fd] = residue{dev: st.Dev, ino: st.Ino, data: append([]byte(nil), f.stash...), eof: f.stashEOF}
}

// takeResidue gives a descriptor opened again what its socket had left.
func (d *Driver) takeResidue(f *file) {
	r, ok := d.residue[f.fd]
	if !ok {
		return
	}
	delete(d.residue, f.fd)
	var st unix.Stat_t
	if unix.Fstat(f.fd, &st) != nil || st.Dev != r.dev || st.Ino != r.ino {
		return
	}
	f.stash, f.stashEOF = append(f.stash[:0], r.data...), r.eof
}
