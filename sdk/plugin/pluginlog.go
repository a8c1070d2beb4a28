package plugin

import (
	"bufio"
	"encoding/json"
	"io"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// forwardLog reads a plugin's stderr until end-of-file and logs each line
// to l (the host's logger, named after the plugin). Serve makes the plugin
// log hclog JSON lines there ({"@level":..., "@message":..., key: value});
// such a line keeps its level, message and key/value pairs (the host's
// logger stamps its own time). Any other line (a third-party plugin's own
// output, JSON without a level) is logged as it is, at debug level, and so
// is each 64 KiB piece of a longer line, except that from a line starting
// "panic: " or "fatal error: " on, such lines (the Go runtime's dying
// words and stack trace) are logged at error level. The
// pipe is read to the end even when l drops everything, so that the plugin
// never blocks writing to it.
func forwardLog(l hclog.Logger, r io.Reader) {
	off := l.GetLevel() == hclog.Off
	dying := false
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		b, err := br.ReadSlice('\n')
		if line := strings.TrimRight(string(b), "\r\n"); line != "" && !off {
			if err == bufio.ErrBufferFull || !logJSON(l, line) {
				dying = dying || strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ")
				if dying {
					l.Error(line)
				} else {
					l.Debug(line)
				}
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

// logJSON logs a plugin's hclog JSON line and reports whether line was
// one; see forwardLog.
func logJSON(l hclog.Logger, line string) bool {
	var entry map[string]any
	if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &entry) != nil {
		return false
	}
	msg, _ := entry["@message"].(string)
	lvl, _ := entry["@level"].(string)
	level := hclog.LevelFromString(lvl)
	if level == hclog.NoLevel {
		return false
	}
	keys := make([]string, 0, len(entry))
	for k := range entry {
		if !strings.HasPrefix(k, "@") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	args := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		args = append(args, k, entry[k])
	}
	l.Log(level, msg, args...)
	return true
}
