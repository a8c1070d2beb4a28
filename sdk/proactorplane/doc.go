// Package proactorplane is the shared-memory plane between a host and an
// out-of-process proactor (the "uring-plugin" placement): the format both
// sides map, and the few operations on it that must agree byte for byte.
//
// Why shared memory and not frames on a socket: a completion back-end
// exists to save system calls, and a socket round trip per operation would
// spend more than the ring saves. So the host writes submissions into a
// ring in a sealed memfd that both processes map, the plugin writes
// completions into another, and an eventfd in each direction wakes a side
// that went to sleep, and only then. The plugin owns the io_uring (an
// io_uring descriptor cannot cross SCM_RIGHTS since the fix for
// CVE-2023-6531); the host keeps owning every socket and passes each once
// over the control socket (SCM_RIGHTS), naming it afterwards by a
// registration number.
//
// The layout (Header, the rings, the read buffers and the write arena), the
// entry formats (Entry, Result), the frames on the control socket (Frame)
// and the sleep/wake protocol are specified in
// sdk/dataplane/PROACTOR_WIRE.md, precisely enough for a plugin in another
// language. This package parses every byte it is handed defensively (a
// plugin may be buggy, and so may a host); the fuzz targets cover the
// parsers.
//
// It imports no other package of this module except sdk and
// internal/yield (the scheduler-yield heuristic, standard library only),
// and nothing of the kernel.
package proactorplane
