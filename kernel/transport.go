package kernel

import "net"

// The transport and protocol interfaces of asyncio, in Go. Protocols are
// implemented by users; transports by the kernel. Bytes handed to a
// protocol (DataReceived, DatagramReceived) are only valid during the call:
// the transport reuses its receive buffer, so receiving allocates nothing.
// Copy what you keep.

// BaseTransport is what every transport offers (asyncio.BaseTransport).
type BaseTransport interface {
	// Close closes the transport; buffered data is flushed first, then the
	// protocol's ConnectionLost is called with nil.
	Close() error
	// IsClosing reports whether the transport is closing or closed.
	IsClosing() bool
	// GetExtraInfo returns transport information such as "peername",
	// "sockname" or "socket", and whether it is known.
	GetExtraInfo(name string) (any, bool)
	// SetProtocol switches the transport to another protocol.
	SetProtocol(p BaseProtocol)
	// GetProtocol returns the current protocol.
	GetProtocol() BaseProtocol
}

// ReadTransport is the read side of a stream transport.
type ReadTransport interface {
	BaseTransport
	IsReading() bool
	// PauseReading stops DataReceived calls until ResumeReading.
	PauseReading() error
	ResumeReading() error
}

// WriteTransport is the write side of a stream transport. Writes go
// straight to the socket when it takes them and are buffered otherwise; the
// buffer's high and low water marks pause and resume a protocol that
// implements WriteFlowControl.
type WriteTransport interface {
	BaseTransport
	// Write queues b; the transport copies what it cannot send at once, so
	// b may be reused when Write returns.
	Write(b []byte) error
	Writelines(bufs [][]byte) error
	// WriteEOF closes the write side after the buffer is flushed.
	WriteEOF() error
	CanWriteEOF() bool
	// Abort closes at once, discarding buffered data; ConnectionLost is
	// called with nil.
	Abort()
	GetWriteBufferSize() int
	GetWriteBufferLimits() (low, high int)
	// SetWriteBufferLimits sets the water marks; high < 0 picks the default
	// (64 KiB) and low < 0 picks high/4.
	SetWriteBufferLimits(high, low int) error
}

// Transport is a bidirectional stream transport (TCP or Unix).
type Transport interface {
	ReadTransport
	WriteTransport
}

// DatagramTransport is a UDP (or Unix datagram) transport.
type DatagramTransport interface {
	BaseTransport
	// SendTo sends one datagram; addr may be nil on a connected endpoint.
	SendTo(b []byte, addr net.Addr) error
	Abort()
	GetWriteBufferSize() int
}

// BaseProtocol is what every protocol implements (asyncio.BaseProtocol).
type BaseProtocol interface {
	// ConnectionMade is called when the transport is ready; stream
	// protocols receive a Transport, datagram ones a DatagramTransport.
	ConnectionMade(t BaseTransport)
	// ConnectionLost is called once when the connection ends; err is nil
	// for a regular EOF, close or abort.
	ConnectionLost(err error)
}

// WriteFlowControl is implemented by protocols that want to know when the
// transport's write buffer crosses its high water mark (PauseWriting) and
// drains below its low one (ResumeWriting).
type WriteFlowControl interface {
	PauseWriting()
	ResumeWriting()
}

// Protocol is a stream protocol (asyncio.Protocol).
type Protocol interface {
	BaseProtocol
	// DataReceived is called with received bytes, valid during the call.
	DataReceived(b []byte)
	// EOFReceived is called when the peer closed its write side. Returning
	// true keeps the transport open for writing (half-close); false closes
	// it.
	EOFReceived() bool
}

// BufferedProtocol is a stream protocol that lends the transport its own
// receive buffer (asyncio.BufferedProtocol), avoiding a copy.
type BufferedProtocol interface {
	BaseProtocol
	// GetBuffer returns a non-empty buffer to receive into; sizeHint is the
	// size the transport would like (-1 if it has no preference).
	GetBuffer(sizeHint int) []byte
	// BufferUpdated reports that n bytes were written into the buffer.
	BufferUpdated(n int)
	EOFReceived() bool
}

// DatagramProtocol is a datagram protocol (asyncio.DatagramProtocol).
type DatagramProtocol interface {
	BaseProtocol
	// DatagramReceived is called with one datagram, valid during the call.
	DatagramReceived(b []byte, addr net.Addr)
	// ErrorReceived is called when a send or receive fails (for example
	// ECONNREFUSED from an ICMP port unreachable); the endpoint stays open.
	ErrorReceived(err error)
}
