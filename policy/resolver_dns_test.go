package policy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The dns back-end is chosen by --resolver in process (dns) and out of
// process (plugin:dns, or dns-plugin as the built-in policies name a plugin
// placement).
func TestChooseDNSResolver(t *testing.T) {
	t.Setenv(ResolverEnv, "")
	for spec, want := range map[string]string{"dns": "dns", "plugin:dns": "plugin:dns", "dns-plugin": "plugin:dns", "go-plugin": "plugin:go"} {
		p, err := Choose(Flags{Resolver: spec})
		require.NoError(t, err, spec)
		assert.Equal(t, want, p.Resolver, spec)
	}
	_, err := Choose(Flags{Resolver: "nosuch-plugin"})
	assert.Error(t, err)
}
