// Package proto holds the control-plane gRPC service of out-of-process
// back-end plugins (every family); control.proto is the source and says how
// to regenerate.
package proto

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative control.proto
