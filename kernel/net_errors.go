package kernel

import "errors"

// Errors of transport operations.
var (
	// ErrTransportClosed: a write or similar on a transport that is closing
	// or closed. (asyncio drops such writes silently and logs after a few;
	// Go callers get the error and may ignore it.)
	ErrTransportClosed = errors.New("transport is closing or closed")
	// ErrWriteAfterEOF: Write after WriteEOF.
	ErrWriteAfterEOF = errors.New("cannot write after WriteEOF")
	// ErrInvalidArgument: an argument or option combination asyncio rejects
	// with ValueError or TypeError.
	ErrInvalidArgument = errors.New("invalid argument")
	// errSendfileInProgress: Write while Sendfile owns the transport.
	errSendfileInProgress = errors.New("unable to write: sendfile is in progress")
)
