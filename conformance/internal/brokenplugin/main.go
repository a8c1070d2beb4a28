// Command brokenplugin serves the deliberately broken selector
// (conformance/internal/brokensel) as an out-of-process plugin, so the
// conformance suite can show it catches the same faults across the process
// boundary as in-process:
//
//	go build -o /tmp/loopkernel-plugin-broken ./conformance/internal/brokenplugin
//	loopkernel conformance --selector=plugin:/tmp/loopkernel-plugin-broken
package main

import (
	"github.com/loopkernel/loopkernel/conformance/internal/brokensel"
	"github.com/loopkernel/loopkernel/sdk/plugin"
)

func main() { plugin.Serve(plugin.Backends{Name: brokensel.Name, Selector: brokensel.New}) }
