package conformance_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/loopkernel/loopkernel/conformance"
	"github.com/loopkernel/loopkernel/driver/readiness"
	"github.com/loopkernel/loopkernel/plugins/selector"
	"github.com/loopkernel/loopkernel/sdk"
)

// noWatch is a driver without descriptor watching, as a completion driver
// without a poll operation would be.
type noWatch struct{ sdk.Driver }

func (d noWatch) Capabilities() sdk.DriverCapabilities {
	c := d.Driver.Capabilities()
	c.Name = "no-watch"
	c.Ops = slices.DeleteFunc(slices.Clone(c.Ops), func(op string) bool { return op == sdk.CapWatch })
	return c
}

// TestNetBindsToDriver: the networking suite runs on the driver it is
// given, and a case that needs an operation the driver lacks is skipped
// with the capability named, not failed.
func TestNetBindsToDriver(t *testing.T) {
	cfg := conformance.NetConfig{Driver: func() (sdk.Driver, error) {
		sel, err := selector.NewPoll()
		if err != nil {
			return nil, err
		}
		return noWatch{readiness.New(sel)}, nil
	}}
	want := map[string]bool{"net/sock/busy-descriptor": true, "net/stream/round-trip": true}
	res, err := conformance.Run(context.Background(), conformance.NetSuite(cfg), conformance.Factory(selector.NewPoll),
		conformance.Options{Match: func(name string) bool { return want[name] }})
	require.NoError(t, err)
	require.Len(t, res, len(want))
	for _, r := range res {
		switch r.Case {
		case "net/sock/busy-descriptor":
			require.Equal(t, conformance.Skip, r.Status)
			require.True(t, strings.Contains(r.SkipReason, "capability watch") && strings.Contains(r.SkipReason, "no-watch"), r.SkipReason)
		default:
			require.Equal(t, conformance.Pass, r.Status, "%s: %s", r.Case, r.Message)
		}
	}
}

// A driver's known gap is skipped by name, and a name that is no case
// panics rather than skip nothing.
func TestNetGapsByName(t *testing.T) {
	s := conformance.NetSuite(conformance.NetConfig{Gaps: map[string]string{"net/server/emfile-survived": "test"}})
	require.True(t, slices.ContainsFunc(s.Cases, func(c conformance.Case) bool { return c.Name == "net/server/emfile-survived" }))
	require.PanicsWithValue(t, `conformance: NetConfig.Gaps names "net/server/emfile-survivd", which is no case of the net suite`, func() {
		conformance.NetSuite(conformance.NetConfig{Gaps: map[string]string{"net/server/emfile-survivd": "misspelt"}})
	})
}
