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
// such a line keeps its level, message and key/value pairs. Any other line
// (a panic's stack trace, a third-party plugin's own output) is logged as
// it is, at debug level, and so is each 64 KiB piece of a longer line. The
// pipe is read to the end even when l drops everything, so that the plugin
// never blocks writing to it.
func forwardLog(l hclog.Logger, r io.Reader) {
	off := l.GetLevel() == hclog.Off
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		b, err := br.ReadSlice('\n')
		if line := strings.TrimRight(string(b), "\r\n"); line != "" && !off {
			if err == bufio.ErrBufferFull {
				l.Debug(line)
			} else {
				logLine(l, line)
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

// logLine logs one line of a plugin's stderr; see forwardLog.
func logLine(l hclog.Logger, line string) {
	var entry map[string]any
	if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &entry) != nil {
		l.Debug(line)
		return
	}
	msg, _ := entry["@message"].(string)
	lvl, _ := entry["@level"].(string)
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
	level := hclog.LevelFromString(lvl)
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	l.Log(level, msg, args...)
}
