package dataplane

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// checks is a stand-in for testify's require with the same call shapes:
// go.sum does not yet carry testify's own dependencies (go-spew, difflib,
// yaml), and go.mod is the lead's to change. Swapping in testify later is a
// matter of deleting this file and importing require.
type checks struct{}

var require checks

func failf(t testing.TB, msg []any, format string, args ...any) {
	t.Helper()
	s := fmt.Sprintf(format, args...)
	if len(msg) > 0 {
		if f, ok := msg[0].(string); ok {
			s += ": " + fmt.Sprintf(f, msg[1:]...)
		}
	}
	t.Fatal(s)
}

func (checks) NoError(t testing.TB, err error, msg ...any) {
	t.Helper()
	if err != nil {
		failf(t, msg, "unexpected error: %v", err)
	}
}

func (checks) ErrorIs(t testing.TB, err, target error, msg ...any) {
	t.Helper()
	if !errors.Is(err, target) {
		failf(t, msg, "error %v is not %v", err, target)
	}
}

func (checks) ErrorContains(t testing.TB, err error, s string, msg ...any) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), s) {
		failf(t, msg, "error %v does not contain %q", err, s)
	}
}

func (checks) Equal(t testing.TB, want, got any, msg ...any) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		failf(t, msg, "not equal:\nwant %#v\n got %#v", want, got)
	}
}

func (checks) Zero(t testing.TB, got any, msg ...any) {
	t.Helper()
	if got != nil && !reflect.ValueOf(got).IsZero() {
		failf(t, msg, "want zero, got %#v", got)
	}
}

func (checks) Len(t testing.TB, x any, n int, msg ...any) {
	t.Helper()
	if l := reflect.ValueOf(x).Len(); l != n {
		failf(t, msg, "length %d, want %d", l, n)
	}
}

func (checks) True(t testing.TB, cond bool, msg ...any) {
	t.Helper()
	if !cond {
		failf(t, msg, "condition false")
	}
}
