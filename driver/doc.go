// Package driver holds the adapters from a back-end family to the kernel's
// I/O seam (sdk.Driver): each subpackage turns one family's primitives
// (readiness from an sdk.Selector; completions from an sdk.Proactor, issue
// 7) into the operations the transports are written against. A driver
// imports sdk and never the kernel or a back-end: the back-end is handed to
// it, whichever placement it runs in.
package driver
