package testkit

import (
	"os"
	"strings"
)

// QuickRaceExit stops the plugin processes a test binary starts (itself,
// re-executed) from sleeping a second on exit when it is built with -race:
// the race runtime's atexit_sleep_ms defaults to 1000, which makes every
// plugin Close take a second and a test that starts hundreds of plugins
// take minutes. Races are still reported; only the pause goes. Call it in
// TestMain before m.Run; a GORACE that sets atexit_sleep_ms is left alone.
func QuickRaceExit() {
	v := os.Getenv("GORACE")
	if !strings.Contains(v, "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(v+" atexit_sleep_ms=0"))
	}
}
