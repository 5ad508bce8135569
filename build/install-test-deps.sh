#!/usr/bin/env bash
# Debian packages the tests use, installed with apt when their command is
# missing. Idempotent; silent when everything is there; one line on stderr
# and a non-zero exit when something cannot be installed.
#
#   command   package    used by
#   dot       graphviz   tests of `pilot -graph` (the DOT output must parse)
set -euo pipefail

NEEDED=(
    "dot graphviz"
)

fail() {
    echo "install-test-deps: $*" >&2
    exit 1
}

missing=()
for pair in "${NEEDED[@]}"; do
    set -- $pair
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
done
[ ${#missing[@]} -eq 0 ] && exit 0

command -v apt-get >/dev/null || fail "need ${missing[*]} and there is no apt-get to install them"
[ "$(id -u)" -eq 0 ] || fail "need ${missing[*]}: run as root or install them (apt-get install ${missing[*]})"
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
    apt-get update -qq >"$log" 2>&1 || fail "apt-get update failed: $(grep -m1 -E '^(E|W):' "$log" || tail -n 1 "$log")"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1 \
        || fail "apt-get install ${missing[*]} failed: $(grep -m1 -E '^E:' "$log" || tail -n 1 "$log")"
fi
