#!/bin/sh
# compare-loop.sh: loopkernel's event loop against Python's asyncio and
# uvloop, measured in one run on this machine (see `loopkernel help bench`).
#
#   bench/compare-loop.sh                      # 5 interleaved rounds, all workloads
#   bench/compare-loop.sh --rounds 3 --policy poll
#
# Arguments are passed to `loopkernel bench loop`. The table goes to stdout;
# the JSON report to $LOOPKERNEL_BENCH_JSON (default
# ${TMPDIR:-/tmp}/loopkernel-bench-loop.json). uvloop comes from Debian's
# python3-uvloop for /usr/bin/python3 (scripts/install-deps.sh installs it);
# without it the uvloop columns read "-".
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
json=${LOOPKERNEL_BENCH_JSON:-${TMPDIR:-/tmp}/loopkernel-bench-loop.json}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

(cd "$root" && go build -o "$work/loopkernel" ./cmd/loopkernel)
if ! /usr/bin/python3 -c 'import uvloop' 2>/dev/null; then
	echo "compare-loop: uvloop is not importable by /usr/bin/python3 (apt-get install python3-uvloop); measuring asyncio only" >&2
fi
"$work/loopkernel" bench loop --json "$json" "$@"
echo "JSON report: $json" >&2
