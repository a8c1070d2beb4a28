package conformance

import "testing"

func TestPatternChecksumMatchesPattern(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 4095, 4096, 4103, 4104, 1<<20 + 13, 100 << 20} {
		if got, want := patternChecksum(n), checksum(execPattern(n)); got != want {
			t.Errorf("n=%d: patternChecksum %d, checksum(execPattern) %d", n, got, want)
		}
	}
}
