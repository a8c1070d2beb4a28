// Package layering holds no code, only the test that keeps the layers
// apart: the kernel imports no back-end (nothing under plugins/), the sdk
// never imports the kernel, and a driver imports neither.
package layering
