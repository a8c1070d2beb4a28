package streams

import (
	"fmt"

	"github.com/loopkernel/loopkernel/kernel"
)

// ConnOptions configure OpenConnection and OpenUnixConnection: the
// Reader's limit and, embedded, everything kernel.CreateConnection takes.
type ConnOptions struct {
	// Limit is the Reader's buffer limit; 0 means DefaultLimit.
	Limit int
	kernel.ConnOptions
}

// ServerOptions configure StartServer and StartUnixServer: each Reader's
// limit and, embedded, everything kernel.CreateServer takes.
type ServerOptions struct {
	// Limit is each connection's Reader limit; 0 means DefaultLimit.
	Limit int
	kernel.ServerOptions
}

// OpenConnection connects to host and port over TCP and returns the
// connection's Reader and Writer (asyncio.open_connection). Names are
// resolved through the loop's resolver.
func OpenConnection(co *kernel.Co, host, port string, opts *ConnOptions) (*Reader, *Writer, error) {
	var o ConnOptions
	if opts != nil {
		o = *opts
	}
	l := co.Loop()
	r := NewReader(o.Limit)
	_, p, err := kernel.CreateConnection(co, func() *protocol { return newProtocol(l, r, nil) }, host, port, &o.ConnOptions)
	if err != nil {
		return nil, nil, fmt.Errorf("open connection: %w", err)
	}
	return r, p.writer, nil
}

// OpenUnixConnection is OpenConnection for the Unix socket at path
// (asyncio.open_unix_connection).
func OpenUnixConnection(co *kernel.Co, path string, opts *ConnOptions) (*Reader, *Writer, error) {
	var o ConnOptions
	if opts != nil {
		o = *opts
	}
	l := co.Loop()
	r := NewReader(o.Limit)
	_, p, err := kernel.CreateUnixConnection(co, func() *protocol { return newProtocol(l, r, nil) }, path, &o.ConnOptions)
	if err != nil {
		return nil, nil, fmt.Errorf("open unix connection: %w", err)
	}
	return r, p.writer, nil
}

// StartServer starts a TCP server on host and port (host "" listens on
// every interface) and runs cb as a new task for each connection
// (asyncio.start_server). The server is serving when StartServer returns,
// unless opts.DeferServing.
func StartServer(co *kernel.Co, cb ClientConnected, host, port string, opts *ServerOptions) (*kernel.Server, error) {
	if cb == nil {
		return nil, fmt.Errorf("start server: nil callback: %w", kernel.ErrInvalidArgument)
	}
	var o ServerOptions
	if opts != nil {
		o = *opts
	}
	var hosts []string
	if host != "" {
		hosts = []string{host}
	}
	srv, err := kernel.CreateServer(co, serverFactory(co.Loop(), cb, o.Limit), hosts, port, &o.ServerOptions)
	if err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	return srv, nil
}

// StartUnixServer is StartServer on the Unix socket path
// (asyncio.start_unix_server).
func StartUnixServer(co *kernel.Co, cb ClientConnected, path string, opts *ServerOptions) (*kernel.Server, error) {
	if cb == nil {
		return nil, fmt.Errorf("start unix server: nil callback: %w", kernel.ErrInvalidArgument)
	}
	var o ServerOptions
	if opts != nil {
		o = *opts
	}
	srv, err := kernel.CreateUnixServer(co, serverFactory(co.Loop(), cb, o.Limit), path, &o.ServerOptions)
	if err != nil {
		return nil, fmt.Errorf("start unix server: %w", err)
	}
	return srv, nil
}

func serverFactory(l *kernel.Loop, cb ClientConnected, limit int) func() *protocol {
	return func() *protocol { return newProtocol(l, NewReader(limit), cb) }
}
