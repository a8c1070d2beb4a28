package kernel

import (
	"fmt"
	"os"
	"syscall"
)

// ErrorContext describes an error the loop could not hand to anyone else:
// the Go form of asyncio's exception-handler context dict. Only Message is
// always set; the other fields are filled when they apply.
type ErrorContext struct {
	Message   string
	Err       error         // the error or recovered panic ("exception")
	Future    Awaitable     // the future or task concerned
	Task      Awaitable     // the task concerned, when it differs from Future
	Handle    Handle        // the callback concerned
	Protocol  BaseProtocol  // the protocol concerned
	Transport BaseTransport // the transport concerned
	Socket    syscall.Conn  // the socket concerned
	// Context is the original context when a custom handler itself failed.
	Context *ErrorContext
}

// ExceptionHandler handles an ErrorContext (asyncio: the handler set with
// set_exception_handler). It runs on the loop goroutine.
type ExceptionHandler func(l *Loop, ctx ErrorContext)

// SetExceptionHandler installs h as the loop's exception handler; nil
// restores the default.
func (l *Loop) SetExceptionHandler(h ExceptionHandler) { l.excHandler = h }

// GetExceptionHandler returns the custom exception handler, or nil when the
// default one is in use.
func (l *Loop) GetExceptionHandler() ExceptionHandler { return l.excHandler }

// DefaultExceptionHandler logs ctx through the loop's logger, with every
// field that is set. Custom handlers may call it too.
func (l *Loop) DefaultExceptionHandler(ctx ErrorContext) {
	msg := ctx.Message
	if msg == "" {
		msg = "Unhandled error in event loop"
	}
	l.logger.Error(msg, ctx.logArgs()...)
}

func (c ErrorContext) logArgs() []any {
	var args []any
	if c.Err != nil {
		args = append(args, "error", c.Err.Error())
		if p, ok := c.Err.(*PanicError); ok {
			args = append(args, "stack", string(p.Stack))
		}
	}
	if c.Future != nil {
		args = append(args, "future", fmt.Sprint(c.Future))
	}
	if c.Task != nil {
		args = append(args, "task", fmt.Sprint(c.Task))
	}
	if c.Handle.h != nil {
		args = append(args, "handle", c.Handle.String())
	}
	if c.Protocol != nil {
		args = append(args, "protocol", fmt.Sprintf("%T", c.Protocol))
	}
	if c.Transport != nil {
		args = append(args, "transport", fmt.Sprintf("%T", c.Transport))
	}
	if c.Socket != nil {
		// A *Socket says its descriptor and addresses; a bare type name
		// would not tell an operator which listener ran out of descriptors.
		if st, ok := c.Socket.(fmt.Stringer); ok {
			args = append(args, "socket", st.String())
		} else {
			args = append(args, "socket", fmt.Sprintf("%T", c.Socket))
		}
	}
	if c.Context != nil {
		args = append(args, "context", c.Context.Message)
		args = append(args, c.Context.logArgs()...)
	}
	return args
}

// CallExceptionHandler passes ctx to the current exception handler. A
// custom handler that panics is reported through the default handler, and a
// default handler that panics (a broken logger) is written to stderr: the
// loop goes on in every case.
func (l *Loop) CallExceptionHandler(ctx ErrorContext) {
	if l.excHandler == nil {
		l.safeDefault(ctx)
		return
	}
	defer func() {
		if r := recover(); r != nil {
			orig := ctx
			l.safeDefault(ErrorContext{
				Message: "Unhandled error in exception handler",
				Err:     newPanicError(r),
				Context: &orig,
			})
		}
	}()
	l.excHandler(l, ctx)
}

func (l *Loop) safeDefault(ctx ErrorContext) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "loopkernel: exception in default exception handler: %v (while handling %q: %v)\n", r, ctx.Message, ctx.Err)
		}
	}()
	l.DefaultExceptionHandler(ctx)
}
