package sdk

import "errors"

// ErrPluginFailed is wrapped by the error an out-of-process back-end (of
// any family) returns once its plugin has crashed or hung more often than
// its supervisor allows. The message names the family, the plugin, its last
// exit status and the restart count. For a selector the kernel treats it as
// fatal to the loop: there is no selector left.
var ErrPluginFailed = errors.New("back-end plugin failed")
