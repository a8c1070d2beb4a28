package kernel

// SetSendfileZeroCopy switches zero-copy sendfile(2) off (or back on) so
// tests can drive the fallback with files sendfile(2) could serve; it
// returns the function that restores the previous setting.
func SetSendfileZeroCopy(on bool) (restore func()) {
	prev := sendfileZeroCopy
	sendfileZeroCopy = on
	return func() { sendfileZeroCopy = prev }
}
