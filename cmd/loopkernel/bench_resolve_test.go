package main

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bench resolve end to end on a small scale: every row measured (none with
// an error note), the plugin row included, and the ratio lines printed.
// No ratio threshold here: that is what the benchmark reports.
func TestBenchResolve(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs /usr/bin/python3 for the asyncio rows")
	}
	r := loopkernel(t, nil, "bench", "resolve", "--rounds", "1", "--duration", "50ms")
	require.Equal(t, 0, r.code, r.stderr)
	for _, row := range []string{
		`(?m)^cached\s+loopkernel dns, Resolver.Getaddrinfo\s+\d+\s+\d+\.\d\d\s*$`,
		`(?m)^cached\s+loopkernel dns, loop.Getaddrinfo\s+\d+\s+\d+\.\d\d\s*$`,
		`(?m)^cached\s+loopkernel plugin:dns, loop.Getaddrinfo\s+\d+\s+\d+\.\d\d\s*$`,
		`(?m)^uncached\s+loopkernel dns, Resolver.Getaddrinfo\s+\d+\s+\d+\.\d\d\s*$`,
		`(?m)^peer\s+Go net.Resolver, same server \(no cache\)\s+\d+\s+\d+\.\d\d\s*$`,
		`(?m)^peer\s+asyncio loop.getaddrinfo, localhost \(hosts file\)\s+\d+\s+\d+\.\d\d\s*$`,
	} {
		assert.Regexp(t, row, r.stdout)
	}
	assert.Contains(t, r.stdout, "Resolver.Getaddrinfo / Go net.Resolver, same server:")
}

func TestBenchResolveUsage(t *testing.T) {
	t.Parallel()
	r := loopkernel(t, nil, "bench", "resolve", "extra")
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "takes no arguments")
}
