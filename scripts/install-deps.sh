#!/usr/bin/env bash
# Installs the Debian packages loopkernel's tests and comparisons use, and
# nothing when they are all present already (no apt-get update either, so a
# warm machine pays nothing and needs no network).
#
#   python3-uvloop     uvloop peer for the echo benchmarks (Debian's python3)
#   socat, netcat-openbsd, curl, wrk, openssl
#                      clients and load generators for the servers' tests and
#                      benchmarks (loopback only)
#   protobuf-compiler  protoc, for `make generate`
#
# Go modules are not installed here: the go command fetches them from the
# module proxy on first build.
#
# Every package is optional for the test run: a test that needs one skips and
# names it. So this script warns, and exits 0, when a package cannot be
# installed (no network, no root, unknown package); it fails only when it is
# used wrongly.
set -euo pipefail

PACKAGES=(python3-uvloop socat curl wrk netcat-openbsd openssl protobuf-compiler)

warn() { printf 'install-deps: warning: %s\n' "$*" >&2; }
say() { printf 'install-deps: %s\n' "$*"; }

if [[ $# -gt 0 ]]; then
	echo "usage: $0   (takes no arguments; installs: ${PACKAGES[*]})" >&2
	exit 2
fi

installed() {
	[[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]
}

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
	for p in "${PACKAGES[@]}"; do
		installed "$p" || missing+=("$p")
	done
else
	warn "not a Debian system (no dpkg-query); install by hand if tests skip: ${PACKAGES[*]}"
	exit 0
fi

if [[ ${#missing[@]} -eq 0 ]]; then
	say "all present: ${PACKAGES[*]}"
	exit 0
fi
say "missing: ${missing[*]}"

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		SUDO=(sudo -n)
	else
		warn "not root and no password-less sudo; not installing: ${missing[*]} (tests that need them will skip)"
		exit 0
	fi
fi

apt() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@" </dev/null; }

if ! apt update >/dev/null; then
	warn "apt-get update failed; trying to install from the package lists already on this machine"
fi
# All at once when that works; one by one otherwise, so one package that cannot
# be had does not keep the others out.
if apt install --no-install-recommends "${missing[@]}" >/dev/null; then
	say "installed: ${missing[*]}"
	exit 0
fi
failed=()
for p in "${missing[@]}"; do
	if apt install --no-install-recommends "$p" >/dev/null 2>&1; then
		say "installed: $p"
	else
		failed+=("$p")
	fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
	warn "could not install: ${failed[*]} (tests and comparisons that need them will skip)"
fi
exit 0
